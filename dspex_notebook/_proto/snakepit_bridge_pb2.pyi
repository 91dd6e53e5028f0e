import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PingRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("message", "server_time", "store_id", "revision", "server_version")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    message: str
    server_time: _timestamp_pb2.Timestamp
    store_id: str
    revision: int
    server_version: str
    def __init__(self, message: _Optional[str] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., store_id: _Optional[str] = ..., revision: _Optional[int] = ..., server_version: _Optional[str] = ...) -> None: ...

class InitializeSessionRequest(_message.Message):
    __slots__ = ("session_id", "metadata", "config")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    metadata: _containers.ScalarMap[str, str]
    config: SessionConfig
    def __init__(self, session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., config: _Optional[_Union[SessionConfig, _Mapping]] = ...) -> None: ...

class SessionConfig(_message.Message):
    __slots__ = ("enable_caching", "cache_ttl_seconds", "enable_telemetry")
    ENABLE_CACHING_FIELD_NUMBER: _ClassVar[int]
    CACHE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    enable_caching: bool
    cache_ttl_seconds: int
    enable_telemetry: bool
    def __init__(self, enable_caching: _Optional[bool] = ..., cache_ttl_seconds: _Optional[int] = ..., enable_telemetry: _Optional[bool] = ...) -> None: ...

class InitializeSessionResponse(_message.Message):
    __slots__ = ("success", "error_message", "available_tools", "initial_variables", "revision")
    class AvailableToolsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ToolSpec
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ToolSpec, _Mapping]] = ...) -> None: ...
    class InitialVariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Variable
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Variable, _Mapping]] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_TOOLS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    available_tools: _containers.MessageMap[str, ToolSpec]
    initial_variables: _containers.MessageMap[str, Variable]
    revision: int
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., available_tools: _Optional[_Mapping[str, ToolSpec]] = ..., initial_variables: _Optional[_Mapping[str, Variable]] = ..., revision: _Optional[int] = ...) -> None: ...

class CleanupSessionRequest(_message.Message):
    __slots__ = ("session_id", "force")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    force: bool
    def __init__(self, session_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class CleanupSessionResponse(_message.Message):
    __slots__ = ("success", "resources_cleaned", "revision")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_CLEANED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    resources_cleaned: int
    revision: int
    def __init__(self, success: _Optional[bool] = ..., resources_cleaned: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session_id", "metadata", "created_at", "variable_count", "tool_count", "last_accessed_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOOL_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    variable_count: int
    tool_count: int
    last_accessed_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., variable_count: _Optional[int] = ..., tool_count: _Optional[int] = ..., last_accessed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("session_id", "client_time")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIME_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    client_time: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., client_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("server_time", "session_valid")
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    SESSION_VALID_FIELD_NUMBER: _ClassVar[int]
    server_time: _timestamp_pb2.Timestamp
    session_valid: bool
    def __init__(self, server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_valid: _Optional[bool] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("session_id", "variable_count", "last_accessed_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_count: int
    last_accessed_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., variable_count: _Optional[int] = ..., last_accessed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "revision")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionSummary]
    revision: int
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionSummary, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class ToolSpec(_message.Message):
    __slots__ = ("name", "description", "parameters", "metadata", "supports_streaming", "required_variables")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_STREAMING_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    metadata: _containers.ScalarMap[str, str]
    supports_streaming: bool
    required_variables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., supports_streaming: _Optional[bool] = ..., required_variables: _Optional[_Iterable[str]] = ...) -> None: ...

class ParameterSpec(_message.Message):
    __slots__ = ("name", "type", "description", "required", "default_value", "validation_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    required: bool
    default_value: _any_pb2.Any
    validation_json: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., required: _Optional[bool] = ..., default_value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., validation_json: _Optional[str] = ...) -> None: ...

class ExecuteToolRequest(_message.Message):
    __slots__ = ("session_id", "tool_name", "parameters", "metadata", "stream", "binary_parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _any_pb2.Any
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class BinaryParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    BINARY_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tool_name: str
    parameters: _containers.MessageMap[str, _any_pb2.Any]
    metadata: _containers.ScalarMap[str, str]
    stream: bool
    binary_parameters: _containers.ScalarMap[str, bytes]
    def __init__(self, session_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _any_pb2.Any]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., stream: _Optional[bool] = ..., binary_parameters: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class ExecuteToolResponse(_message.Message):
    __slots__ = ("success", "result", "error_message", "metadata", "execution_time_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    result: _any_pb2.Any
    error_message: str
    metadata: _containers.ScalarMap[str, str]
    execution_time_ms: int
    def __init__(self, success: _Optional[bool] = ..., result: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., error_message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., execution_time_ms: _Optional[int] = ...) -> None: ...

class ToolChunk(_message.Message):
    __slots__ = ("chunk_id", "data", "is_final", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    data: bytes
    is_final: bool
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, chunk_id: _Optional[str] = ..., data: _Optional[bytes] = ..., is_final: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterToolsRequest(_message.Message):
    __slots__ = ("session_id", "tools", "worker_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tools: _containers.RepeatedCompositeFieldContainer[ToolRegistration]
    worker_id: str
    def __init__(self, session_id: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[ToolRegistration, _Mapping]]] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ToolRegistration(_message.Message):
    __slots__ = ("name", "description", "parameters", "metadata", "supports_streaming")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_STREAMING_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    metadata: _containers.ScalarMap[str, str]
    supports_streaming: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., supports_streaming: _Optional[bool] = ...) -> None: ...

class RegisterToolsResponse(_message.Message):
    __slots__ = ("success", "tool_ids", "error_message")
    class ToolIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TOOL_IDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    tool_ids: _containers.ScalarMap[str, str]
    error_message: str
    def __init__(self, success: _Optional[bool] = ..., tool_ids: _Optional[_Mapping[str, str]] = ..., error_message: _Optional[str] = ...) -> None: ...

class GetExposedElixirToolsRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetExposedElixirToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    def __init__(self, tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ...) -> None: ...

class ExecuteElixirToolRequest(_message.Message):
    __slots__ = ("session_id", "tool_name", "parameters", "metadata")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _any_pb2.Any
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tool_name: str
    parameters: _containers.MessageMap[str, _any_pb2.Any]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _any_pb2.Any]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExecuteElixirToolResponse(_message.Message):
    __slots__ = ("success", "result", "error_message", "metadata", "execution_time_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    result: _any_pb2.Any
    error_message: str
    metadata: _containers.ScalarMap[str, str]
    execution_time_ms: int
    def __init__(self, success: _Optional[bool] = ..., result: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., error_message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., execution_time_ms: _Optional[int] = ...) -> None: ...

class Variable(_message.Message):
    __slots__ = ("id", "name", "type", "value", "constraints_json", "metadata", "source", "last_updated_at", "version", "access_control_json", "optimization_status", "binary_value", "mod_revision", "create_revision", "session_id")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ELIXIR: _ClassVar[Variable.Source]
        PYTHON: _ClassVar[Variable.Source]
    ELIXIR: Variable.Source
    PYTHON: Variable.Source
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CONTROL_JSON_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATION_STATUS_FIELD_NUMBER: _ClassVar[int]
    BINARY_VALUE_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    type: str
    value: _any_pb2.Any
    constraints_json: str
    metadata: _containers.ScalarMap[str, str]
    source: Variable.Source
    last_updated_at: _timestamp_pb2.Timestamp
    version: int
    access_control_json: str
    optimization_status: OptimizationStatus
    binary_value: bytes
    mod_revision: int
    create_revision: int
    session_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., constraints_json: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source: _Optional[_Union[Variable.Source, str]] = ..., last_updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., access_control_json: _Optional[str] = ..., optimization_status: _Optional[_Union[OptimizationStatus, _Mapping]] = ..., binary_value: _Optional[bytes] = ..., mod_revision: _Optional[int] = ..., create_revision: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class OptimizationStatus(_message.Message):
    __slots__ = ("optimizing", "optimizer_id", "started_at")
    OPTIMIZING_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    optimizing: bool
    optimizer_id: str
    started_at: _timestamp_pb2.Timestamp
    def __init__(self, optimizing: _Optional[bool] = ..., optimizer_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RegisterVariableRequest(_message.Message):
    __slots__ = ("session_id", "name", "type", "initial_value", "constraints_json", "metadata", "initial_binary_value", "replace", "dependencies")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BINARY_VALUE_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    name: str
    type: str
    initial_value: _any_pb2.Any
    constraints_json: str
    metadata: _containers.ScalarMap[str, str]
    initial_binary_value: bytes
    replace: bool
    dependencies: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., initial_value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., constraints_json: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., initial_binary_value: _Optional[bytes] = ..., replace: _Optional[bool] = ..., dependencies: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterVariableResponse(_message.Message):
    __slots__ = ("success", "variable_id", "error_message", "revision", "variable")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    variable_id: str
    error_message: str
    revision: int
    variable: Variable
    def __init__(self, success: _Optional[bool] = ..., variable_id: _Optional[str] = ..., error_message: _Optional[str] = ..., revision: _Optional[int] = ..., variable: _Optional[_Union[Variable, _Mapping]] = ...) -> None: ...

class BatchRegisterVariablesRequest(_message.Message):
    __slots__ = ("session_id", "variables", "updates", "binary_updates", "update_metadata")
    class UpdatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _any_pb2.Any
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...
    class BinaryUpdatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class UpdateMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    BINARY_UPDATES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_METADATA_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variables: _containers.RepeatedCompositeFieldContainer[RegisterVariableRequest]
    updates: _containers.MessageMap[str, _any_pb2.Any]
    binary_updates: _containers.ScalarMap[str, bytes]
    update_metadata: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., variables: _Optional[_Iterable[_Union[RegisterVariableRequest, _Mapping]]] = ..., updates: _Optional[_Mapping[str, _any_pb2.Any]] = ..., binary_updates: _Optional[_Mapping[str, bytes]] = ..., update_metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BatchRegisterVariablesResponse(_message.Message):
    __slots__ = ("success", "variable_ids", "revision", "variables")
    class VariableIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    success: bool
    variable_ids: _containers.ScalarMap[str, str]
    revision: int
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    def __init__(self, success: _Optional[bool] = ..., variable_ids: _Optional[_Mapping[str, str]] = ..., revision: _Optional[int] = ..., variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ...) -> None: ...

class GetVariableRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "bypass_cache")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    BYPASS_CACHE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    bypass_cache: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., bypass_cache: _Optional[bool] = ...) -> None: ...

class GetVariableResponse(_message.Message):
    __slots__ = ("variable", "from_cache", "revision")
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    variable: Variable
    from_cache: bool
    revision: int
    def __init__(self, variable: _Optional[_Union[Variable, _Mapping]] = ..., from_cache: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class SetVariableRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "value", "metadata", "expected_version", "binary_value")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    BINARY_VALUE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    value: _any_pb2.Any
    metadata: _containers.ScalarMap[str, str]
    expected_version: int
    binary_value: bytes
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., expected_version: _Optional[int] = ..., binary_value: _Optional[bytes] = ...) -> None: ...

class SetVariableResponse(_message.Message):
    __slots__ = ("success", "error_message", "new_version", "revision")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    new_version: int
    revision: int
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., new_version: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class BatchGetVariablesRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifiers", "include_metadata", "bypass_cache", "values_only")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    BYPASS_CACHE_FIELD_NUMBER: _ClassVar[int]
    VALUES_ONLY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifiers: _containers.RepeatedScalarFieldContainer[str]
    include_metadata: bool
    bypass_cache: bool
    values_only: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifiers: _Optional[_Iterable[str]] = ..., include_metadata: _Optional[bool] = ..., bypass_cache: _Optional[bool] = ..., values_only: _Optional[bool] = ...) -> None: ...

class BatchGetVariablesResponse(_message.Message):
    __slots__ = ("variables", "missing_variables", "revision", "packed_values", "packed_binary")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Variable
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Variable, _Mapping]] = ...) -> None: ...
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    MISSING_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PACKED_VALUES_FIELD_NUMBER: _ClassVar[int]
    PACKED_BINARY_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.MessageMap[str, Variable]
    missing_variables: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    packed_values: bytes
    packed_binary: bytes
    def __init__(self, variables: _Optional[_Mapping[str, Variable]] = ..., missing_variables: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ..., packed_values: _Optional[bytes] = ..., packed_binary: _Optional[bytes] = ...) -> None: ...

class BatchSetVariablesRequest(_message.Message):
    __slots__ = ("session_id", "updates", "metadata", "atomic", "binary_updates")
    class UpdatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _any_pb2.Any
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class BinaryUpdatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    BINARY_UPDATES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    updates: _containers.MessageMap[str, _any_pb2.Any]
    metadata: _containers.ScalarMap[str, str]
    atomic: bool
    binary_updates: _containers.ScalarMap[str, bytes]
    def __init__(self, session_id: _Optional[str] = ..., updates: _Optional[_Mapping[str, _any_pb2.Any]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., atomic: _Optional[bool] = ..., binary_updates: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class BatchSetVariablesResponse(_message.Message):
    __slots__ = ("success", "errors", "new_versions", "revision")
    class ErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NewVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NEW_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    errors: _containers.ScalarMap[str, str]
    new_versions: _containers.ScalarMap[str, int]
    revision: int
    def __init__(self, success: _Optional[bool] = ..., errors: _Optional[_Mapping[str, str]] = ..., new_versions: _Optional[_Mapping[str, int]] = ..., revision: _Optional[int] = ...) -> None: ...

class ListVariablesRequest(_message.Message):
    __slots__ = ("session_id", "pattern")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pattern: str
    def __init__(self, session_id: _Optional[str] = ..., pattern: _Optional[str] = ...) -> None: ...

class ListVariablesResponse(_message.Message):
    __slots__ = ("variables", "revision")
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    revision: int
    def __init__(self, variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class DeleteVariableRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "force")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    force: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteVariableResponse(_message.Message):
    __slots__ = ("success", "error_message", "revision")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    revision: int
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class WatchVariablesRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifiers", "include_initial_values")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INITIAL_VALUES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifiers: _containers.RepeatedScalarFieldContainer[str]
    include_initial_values: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifiers: _Optional[_Iterable[str]] = ..., include_initial_values: _Optional[bool] = ...) -> None: ...

class VariableUpdate(_message.Message):
    __slots__ = ("variable_id", "variable", "update_source", "update_metadata", "timestamp", "update_type")
    class UpdateMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_METADATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    variable_id: str
    variable: Variable
    update_source: str
    update_metadata: _containers.ScalarMap[str, str]
    timestamp: _timestamp_pb2.Timestamp
    update_type: str
    def __init__(self, variable_id: _Optional[str] = ..., variable: _Optional[_Union[Variable, _Mapping]] = ..., update_source: _Optional[str] = ..., update_metadata: _Optional[_Mapping[str, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_type: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifiers", "include_initial", "start_revision", "store_id", "progress_interval_ms", "include_upstream")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INITIAL_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifiers: _containers.RepeatedScalarFieldContainer[str]
    include_initial: bool
    start_revision: int
    store_id: str
    progress_interval_ms: int
    include_upstream: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifiers: _Optional[_Iterable[str]] = ..., include_initial: _Optional[bool] = ..., start_revision: _Optional[int] = ..., store_id: _Optional[str] = ..., progress_interval_ms: _Optional[int] = ..., include_upstream: _Optional[bool] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("variable_id", "name", "kind", "type", "value", "binary_value", "old_value", "old_binary_value", "version", "revision", "source", "metadata", "timestamp", "constraints_json", "principal", "session_id", "has_old_value", "dependents")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BINARY_VALUE_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    OLD_BINARY_VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENTS_FIELD_NUMBER: _ClassVar[int]
    variable_id: str
    name: str
    kind: str
    type: str
    value: _any_pb2.Any
    binary_value: bytes
    old_value: _any_pb2.Any
    old_binary_value: bytes
    version: int
    revision: int
    source: str
    metadata: _containers.ScalarMap[str, str]
    timestamp: _timestamp_pb2.Timestamp
    constraints_json: str
    principal: str
    session_id: str
    has_old_value: bool
    dependents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, variable_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., type: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., binary_value: _Optional[bytes] = ..., old_value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., old_binary_value: _Optional[bytes] = ..., version: _Optional[int] = ..., revision: _Optional[int] = ..., source: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., constraints_json: _Optional[str] = ..., principal: _Optional[str] = ..., session_id: _Optional[str] = ..., has_old_value: _Optional[bool] = ..., dependents: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("store_id", "revision", "events", "created", "initial", "progress", "canceled", "cancel_reason", "compact_revision")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    revision: int
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    created: bool
    initial: bool
    progress: bool
    canceled: bool
    cancel_reason: str
    compact_revision: int
    def __init__(self, store_id: _Optional[str] = ..., revision: _Optional[int] = ..., events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., created: _Optional[bool] = ..., initial: _Optional[bool] = ..., progress: _Optional[bool] = ..., canceled: _Optional[bool] = ..., cancel_reason: _Optional[str] = ..., compact_revision: _Optional[int] = ...) -> None: ...

class GetVariableStatsRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifiers")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifiers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., variable_identifiers: _Optional[_Iterable[str]] = ...) -> None: ...

class VariableStats(_message.Message):
    __slots__ = ("variable_id", "name", "read_count", "write_count", "watchers", "version", "history_length")
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    READ_COUNT_FIELD_NUMBER: _ClassVar[int]
    WRITE_COUNT_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    variable_id: str
    name: str
    read_count: int
    write_count: int
    watchers: int
    version: int
    history_length: int
    def __init__(self, variable_id: _Optional[str] = ..., name: _Optional[str] = ..., read_count: _Optional[int] = ..., write_count: _Optional[int] = ..., watchers: _Optional[int] = ..., version: _Optional[int] = ..., history_length: _Optional[int] = ...) -> None: ...

class GetVariableStatsResponse(_message.Message):
    __slots__ = ("stats", "missing_variables", "revision", "session_watchers")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: VariableStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[VariableStats, _Mapping]] = ...) -> None: ...
    STATS_FIELD_NUMBER: _ClassVar[int]
    MISSING_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SESSION_WATCHERS_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.MessageMap[str, VariableStats]
    missing_variables: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    session_watchers: int
    def __init__(self, stats: _Optional[_Mapping[str, VariableStats]] = ..., missing_variables: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ..., session_watchers: _Optional[int] = ...) -> None: ...

class AddDependencyRequest(_message.Message):
    __slots__ = ("session_id", "from_variable", "to_variable", "dependency_type", "metadata_json")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    TO_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    from_variable: str
    to_variable: str
    dependency_type: str
    metadata_json: str
    def __init__(self, session_id: _Optional[str] = ..., from_variable: _Optional[str] = ..., to_variable: _Optional[str] = ..., dependency_type: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class AddDependencyResponse(_message.Message):
    __slots__ = ("success", "error_message", "revision")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    revision: int
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class RemoveDependencyRequest(_message.Message):
    __slots__ = ("session_id", "from_variable", "to_variable")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    TO_VARIABLE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    from_variable: str
    to_variable: str
    def __init__(self, session_id: _Optional[str] = ..., from_variable: _Optional[str] = ..., to_variable: _Optional[str] = ...) -> None: ...

class RemoveDependencyResponse(_message.Message):
    __slots__ = ("success", "revision")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    revision: int
    def __init__(self, success: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class GetDependenciesRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "include_transitive", "dependents")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TRANSITIVE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    include_transitive: bool
    dependents: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., include_transitive: _Optional[bool] = ..., dependents: _Optional[bool] = ...) -> None: ...

class DependencyInfo(_message.Message):
    __slots__ = ("variable_id", "name", "type", "metadata_json", "depth", "via")
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    variable_id: str
    name: str
    type: str
    metadata_json: str
    depth: int
    via: str
    def __init__(self, variable_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., metadata_json: _Optional[str] = ..., depth: _Optional[int] = ..., via: _Optional[str] = ...) -> None: ...

class GetDependenciesResponse(_message.Message):
    __slots__ = ("dependencies", "revision")
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    dependencies: _containers.RepeatedCompositeFieldContainer[DependencyInfo]
    revision: int
    def __init__(self, dependencies: _Optional[_Iterable[_Union[DependencyInfo, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class StartOptimizationRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "optimizer_id", "optimizer_config", "max_iterations", "convergence_threshold", "optimizer_config_json", "client_side", "lease_seconds", "driven")
    class OptimizerConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    CONVERGENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SIDE_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DRIVEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    optimizer_id: str
    optimizer_config: _containers.ScalarMap[str, str]
    max_iterations: int
    convergence_threshold: float
    optimizer_config_json: str
    client_side: bool
    lease_seconds: float
    driven: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., optimizer_id: _Optional[str] = ..., optimizer_config: _Optional[_Mapping[str, str]] = ..., max_iterations: _Optional[int] = ..., convergence_threshold: _Optional[float] = ..., optimizer_config_json: _Optional[str] = ..., client_side: _Optional[bool] = ..., lease_seconds: _Optional[float] = ..., driven: _Optional[bool] = ...) -> None: ...

class StartOptimizationResponse(_message.Message):
    __slots__ = ("success", "error_message", "optimization_id", "revision", "status_json")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    optimization_id: str
    revision: int
    status_json: str
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., optimization_id: _Optional[str] = ..., revision: _Optional[int] = ..., status_json: _Optional[str] = ...) -> None: ...

class StopOptimizationRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "force", "optimization_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    force: bool
    optimization_id: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., force: _Optional[bool] = ..., optimization_id: _Optional[str] = ...) -> None: ...

class StopOptimizationResponse(_message.Message):
    __slots__ = ("success", "final_value", "revision", "status_json")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FINAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    success: bool
    final_value: _any_pb2.Any
    revision: int
    status_json: str
    def __init__(self, success: _Optional[bool] = ..., final_value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., revision: _Optional[int] = ..., status_json: _Optional[str] = ...) -> None: ...

class NextTrialRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "optimization_id", "proposal_json")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_JSON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    optimization_id: str
    proposal_json: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., optimization_id: _Optional[str] = ..., proposal_json: _Optional[str] = ...) -> None: ...

class NextTrialResponse(_message.Message):
    __slots__ = ("trial_id", "value_json", "done", "stop_reason", "revision", "optimization_id")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    trial_id: int
    value_json: str
    done: bool
    stop_reason: str
    revision: int
    optimization_id: str
    def __init__(self, trial_id: _Optional[int] = ..., value_json: _Optional[str] = ..., done: _Optional[bool] = ..., stop_reason: _Optional[str] = ..., revision: _Optional[int] = ..., optimization_id: _Optional[str] = ...) -> None: ...

class ReportTrialRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "optimization_id", "trial_id", "metrics_json", "error", "next", "proposal_json", "omit_status")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_JSON_FIELD_NUMBER: _ClassVar[int]
    OMIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    optimization_id: str
    trial_id: int
    metrics_json: str
    error: str
    next: bool
    proposal_json: str
    omit_status: bool
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., optimization_id: _Optional[str] = ..., trial_id: _Optional[int] = ..., metrics_json: _Optional[str] = ..., error: _Optional[str] = ..., next: _Optional[bool] = ..., proposal_json: _Optional[str] = ..., omit_status: _Optional[bool] = ...) -> None: ...

class ReportTrialResponse(_message.Message):
    __slots__ = ("done", "stop_reason", "status_json", "revision", "next")
    DONE_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    done: bool
    stop_reason: str
    status_json: str
    revision: int
    next: NextTrialResponse
    def __init__(self, done: _Optional[bool] = ..., stop_reason: _Optional[str] = ..., status_json: _Optional[str] = ..., revision: _Optional[int] = ..., next: _Optional[_Union[NextTrialResponse, _Mapping]] = ...) -> None: ...

class OptimizationQuery(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "optimization_id", "limit", "since")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    optimization_id: str
    limit: int
    since: float
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., optimization_id: _Optional[str] = ..., limit: _Optional[int] = ..., since: _Optional[float] = ...) -> None: ...

class OptimizationReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class GetVariableHistoryRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "limit", "offset")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    limit: int
    offset: int
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class GetVariableHistoryResponse(_message.Message):
    __slots__ = ("entries", "compact_revision")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[VariableHistoryEntry]
    compact_revision: int
    def __init__(self, entries: _Optional[_Iterable[_Union[VariableHistoryEntry, _Mapping]]] = ..., compact_revision: _Optional[int] = ...) -> None: ...

class VariableHistoryEntry(_message.Message):
    __slots__ = ("version", "value", "timestamp", "changed_by", "metadata", "revision", "binary_value", "op")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    BINARY_VALUE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    version: int
    value: _any_pb2.Any
    timestamp: _timestamp_pb2.Timestamp
    changed_by: str
    metadata: _containers.ScalarMap[str, str]
    revision: int
    binary_value: bytes
    op: str
    def __init__(self, version: _Optional[int] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changed_by: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., revision: _Optional[int] = ..., binary_value: _Optional[bytes] = ..., op: _Optional[str] = ...) -> None: ...

class RollbackVariableRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "target_version", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    TARGET_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    target_version: int
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., target_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackVariableResponse(_message.Message):
    __slots__ = ("success", "variable", "error_message", "revision")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    success: bool
    variable: Variable
    error_message: str
    revision: int
    def __init__(self, success: _Optional[bool] = ..., variable: _Optional[_Union[Variable, _Mapping]] = ..., error_message: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ExportVariablesRequest(_message.Message):
    __slots__ = ("session_id", "pattern", "include_history", "include_dependencies")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pattern: str
    include_history: bool
    include_dependencies: bool
    def __init__(self, session_id: _Optional[str] = ..., pattern: _Optional[str] = ..., include_history: _Optional[bool] = ..., include_dependencies: _Optional[bool] = ...) -> None: ...

class ExportVariablesResponse(_message.Message):
    __slots__ = ("document_json", "revision", "variable_count")
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    document_json: bytes
    revision: int
    variable_count: int
    def __init__(self, document_json: _Optional[bytes] = ..., revision: _Optional[int] = ..., variable_count: _Optional[int] = ...) -> None: ...

class ImportVariablesRequest(_message.Message):
    __slots__ = ("session_id", "document_json", "merge_strategy", "dry_run")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    MERGE_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    document_json: bytes
    merge_strategy: str
    dry_run: bool
    def __init__(self, session_id: _Optional[str] = ..., document_json: _Optional[bytes] = ..., merge_strategy: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ImportVariablesResponse(_message.Message):
    __slots__ = ("summary_json", "revision")
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    summary_json: str
    revision: int
    def __init__(self, summary_json: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class GetVariablesAtRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifiers", "revision")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifiers: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    def __init__(self, session_id: _Optional[str] = ..., variable_identifiers: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetVariablesAtResponse(_message.Message):
    __slots__ = ("variables", "missing_variables", "revision", "compact_revision")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Variable
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Variable, _Mapping]] = ...) -> None: ...
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    MISSING_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    variables: _containers.MessageMap[str, Variable]
    missing_variables: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    compact_revision: int
    def __init__(self, variables: _Optional[_Mapping[str, Variable]] = ..., missing_variables: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ..., compact_revision: _Optional[int] = ...) -> None: ...

class RestoreSessionRequest(_message.Message):
    __slots__ = ("session_id", "revision", "dry_run")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    revision: int
    dry_run: bool
    def __init__(self, session_id: _Optional[str] = ..., revision: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RestoreSessionResponse(_message.Message):
    __slots__ = ("summary_json", "revision")
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    summary_json: str
    revision: int
    def __init__(self, summary_json: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class SetVariablePermissionsRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "rules_json")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    RULES_JSON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    rules_json: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., rules_json: _Optional[str] = ...) -> None: ...

class GetVariablePermissionsRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ...) -> None: ...

class VariablePermissionsResponse(_message.Message):
    __slots__ = ("variable_id", "rules_json", "revision")
    VARIABLE_ID_FIELD_NUMBER: _ClassVar[int]
    RULES_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    variable_id: str
    rules_json: str
    revision: int
    def __init__(self, variable_id: _Optional[str] = ..., rules_json: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class CheckVariableAccessRequest(_message.Message):
    __slots__ = ("session_id", "variable_identifier", "permission", "as_session")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    AS_SESSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    variable_identifier: str
    permission: str
    as_session: str
    def __init__(self, session_id: _Optional[str] = ..., variable_identifier: _Optional[str] = ..., permission: _Optional[str] = ..., as_session: _Optional[str] = ...) -> None: ...

class CheckVariableAccessResponse(_message.Message):
    __slots__ = ("allowed", "reason", "revision")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    revision: int
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...
