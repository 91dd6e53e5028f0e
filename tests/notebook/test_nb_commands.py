"""The magics' library functions (``dspex_notebook.notebook.commands``), without IPython."""

from __future__ import annotations

import pytest

from dspex_notebook._errors import InvalidArgument
from dspex_notebook.notebook import commands


@pytest.mark.parametrize(("text", "argv"), [
    ("", []),
    ("x", ["x"]),
    ("x float", ["x", "float"]),
    ("x  float\t 1 + 2  --max 3", ["x", "float", "1 + 2", "--max", "3"]),
    ("stops list ['###', \"END\"] --replace", ["stops", "list", "['###', \"END\"]", "--replace"]),
    ("e embedding np.zeros(3, dtype='float32')", ["e", "embedding", "np.zeros(3, dtype='float32')"]),
    ('p string "use --verbose" --description \'a b\'',
     ["p", "string", '"use --verbose"', "--description", "a b"]),
    ("x float 5--max 1", ["x", "float", "5--max 1"]),  # `--` only starts options after a space
    ("x float a --min=0", ["x", "float", "a", "--min=0"]),
    ("'odd name' float 1", ["odd name", "float", "1"]),
    ("p string it's fine", ["p", "string", "it's fine"]),
    ("p string it's fine --replace", ["p", "string", "it's fine", "--replace"]),
])
def test_register_argv_keeps_value_verbatim(text, argv):
    assert commands.register_argv(text) == argv


@pytest.mark.parametrize("text", ["'x float 1", "x float 1 --description 'oops"])
def test_register_argv_unbalanced_quotes(text):
    with pytest.raises(ValueError, match="No closing quotation"):
        commands.register_argv(text)


def test_value_from_text():
    ns = {"greeting": "hi", "k": 3}
    ev = lambda text: eval(text, {}, ns)  # noqa: E731, S307
    assert commands.value_from_text("float", "0.5 * 2", ev) == 1.0
    assert commands.value_from_text("integer", "k + 1", ev) == 4
    assert commands.value_from_text("string", "greeting", ev) == "hi"
    assert commands.value_from_text("string", "gpt-4", ev) == "gpt-4"  # NameError: literal
    assert commands.value_from_text("choice", "max", ev) == "max"  # a builtin: literal
    assert commands.value_from_text("module", "Be concise.", ev) == "Be concise."  # SyntaxError
    assert commands.value_from_text("string", "42", ev) == "42"
    with pytest.raises(NameError):
        commands.value_from_text("float", "nope", ev)
    with pytest.raises(SyntaxError):
        commands.value_from_text("list", "[1,", ev)


def test_constraints_from_options():
    assert commands.constraints_from_options("integer", min="1", max="10", step="2") == {
        "min": 1, "max": 10, "step": 2}
    assert commands.constraints_from_options("float", min="0", constraints='{"max": 2}') == {
        "max": 2, "min": 0.0}
    assert commands.constraints_from_options("choice", choices=" a, b ,,c ") == {"choices": ["a", "b", "c"]}
    with pytest.raises(InvalidArgument, match="--step must be a number, got 'x'"):
        commands.constraints_from_options("float", step="x")
    with pytest.raises(InvalidArgument, match="--constraints must be a JSON object"):
        commands.constraints_from_options("float", constraints="[1]")


def test_parse_var_block():
    registrations, updates = commands.parse_var_block(
        "t: {type: float, value: 0.5, constraints: {max: 1}, metadata: {owner: me}, description: d}\n"
        "n: 3\nl: [1, 2]\nd: {a: 1}\n")
    assert registrations == [{"name": "t", "type": "float", "initial_value": 0.5,
                              "constraints": {"max": 1}, "metadata": {"owner": "me", "description": "d"}}]
    assert updates == {"n": 3, "l": [1, 2], "d": {"a": 1}}  # a mapping without `type` is a value
    assert commands.parse_var_block("# only a comment\n") == ([], {})
    with pytest.raises(InvalidArgument) as info:
        commands.parse_var_block("a: [1,\nb: 2\n")
    assert "\n" not in str(info.value) and str(info.value).startswith("%%var block is not valid YAML (line")
    with pytest.raises(InvalidArgument, match="could not determine a constructor"):  # safe_load only
        commands.parse_var_block("a: !!python/object/apply:os.system ['true']\n")
