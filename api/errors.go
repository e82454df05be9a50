// Package api holds the OpenAI-compatible wire types of stepflash's HTTP API:
// requests and responses of /v1/chat/completions, /v1/completions and
// /v1/models, the streaming chunks, the usage object with stepflash's
// extensions, and the OpenAI error object with the status codes and error
// codes of DESIGN.md section 4.
package api

import (
	"fmt"
	"net/http"
)

// Error types (the "type" field of an error object).
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
)

// Error codes (the "code" field of an error object).
const (
	CodeInvalidJSON           = "invalid_json"
	CodeInvalidType           = "invalid_type"
	CodeInvalidValue          = "invalid_value"
	CodeMissingParameter      = "missing_required_parameter"
	CodeUnsupportedParameter  = "unsupported_parameter"
	CodeInvalidReasoning      = "invalid_reasoning_effort"
	CodeInvalidAdvisor        = "invalid_advisor"
	CodeContextLengthExceeded = "context_length_exceeded"
	CodeRequestTooLarge       = "request_too_large"
	CodeModelNotFound         = "model_not_found"
	CodeNotFound              = "not_found"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeModelLoading          = "model_loading"
	CodeOverloaded            = "overloaded"
	CodeInternal              = "internal_error"
)

// Error is an OpenAI error object. It is also a Go error; Status and
// RetryAfter travel with it to the HTTP layer but are not part of the JSON.
type Error struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`

	// Status is the HTTP status the error is sent with.
	Status int `json:"-"`
	// RetryAfter, when positive, is sent as the Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

// ErrorResponse is the body of every error response: {"error": {...}}.
type ErrorResponse struct {
	Error *Error `json:"error"`
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// CodeString returns the code, or "" when it is null.
func (e *Error) CodeString() string {
	if e.Code == nil {
		return ""
	}
	return *e.Code
}

// ParamString returns the param, or "" when it is null.
func (e *Error) ParamString() string {
	if e.Param == nil {
		return ""
	}
	return *e.Param
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// NewError makes an error object. Empty param or code become JSON null.
func NewError(status int, typ, code, param, format string, args ...any) *Error {
	return &Error{Message: fmt.Sprintf(format, args...), Type: typ, Param: strPtr(param), Code: strPtr(code), Status: status}
}

// InvalidRequest is a 400 invalid_request_error.
func InvalidRequest(code, param, format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, TypeInvalidRequest, code, param, format, args...)
}

// Unsupported is a 400 unsupported_parameter naming the field.
func Unsupported(param, format string, args ...any) *Error {
	return NewError(http.StatusBadRequest, TypeInvalidRequest, CodeUnsupportedParameter, param, format, args...)
}

// ModelNotFound is a 404 model_not_found listing the served names.
func ModelNotFound(name string, served []string) *Error {
	return NewError(http.StatusNotFound, TypeNotFound, CodeModelNotFound, "model",
		"The model %q does not exist or is not served here. Served models: %s.", name, quoteList(served))
}

// ContextLengthExceeded is a 400 context_length_exceeded with both numbers.
func ContextLengthExceeded(param string, context, promptTokens, completionTokens int) *Error {
	if completionTokens > 0 {
		return InvalidRequest(CodeContextLengthExceeded, param,
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			context, promptTokens+completionTokens, promptTokens, completionTokens)
	}
	return InvalidRequest(CodeContextLengthExceeded, param,
		"This model's maximum context length is %d tokens. However, your messages resulted in %d tokens. Please reduce the length of the messages.",
		context, promptTokens)
}

// Overloaded is a 503 overloaded with Retry-After.
func Overloaded(retryAfter int) *Error {
	e := NewError(http.StatusServiceUnavailable, TypeServer, CodeOverloaded, "",
		"The server is overloaded: the request queue is full. Retry after %d second(s).", retryAfter)
	e.RetryAfter = retryAfter
	return e
}

// ModelLoading is a 503 model_loading with Retry-After.
func ModelLoading(retryAfter int) *Error {
	e := NewError(http.StatusServiceUnavailable, TypeServer, CodeModelLoading, "",
		"The model is still loading. Retry after %d second(s).", retryAfter)
	e.RetryAfter = retryAfter
	return e
}

// Internal is a 500 server_error.
func Internal(format string, args ...any) *Error {
	return NewError(http.StatusInternalServerError, TypeServer, CodeInternal, "", format, args...)
}

func quoteList(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", n)
	}
	if s == "" {
		return "(none)"
	}
	return s
}
