package media

import (
	"context"
	"errors"
	"fmt"

	"github.com/stepflash/stepflash/api"
)

// Reason codes of an *Error. The first three are the 400 codes of DESIGN.md
// section 4; ReasonInvalidImageURL is the code OpenAI gives an image URL it
// could not download (a timeout, a refused connection, an HTTP error status).
const (
	// ReasonInvalidImage: the bytes are not a PNG, JPEG, WebP or GIF image,
	// are corrupt or truncated, or do not match the declared media type; or
	// the data: URL is malformed.
	ReasonInvalidImage = "invalid_image"
	// ReasonImageTooLarge: more bytes than MaxBytes, or more pixels than
	// MaxPixels.
	ReasonImageTooLarge = "image_too_large"
	// ReasonImageURLForbidden: a scheme that is not allowed (http:// without
	// AllowHTTP, file:, ...) or an address that is not fetched (loopback,
	// private, link-local, ...), also when reached by a redirect or by DNS.
	ReasonImageURLForbidden = "image_url_forbidden"
	// ReasonInvalidImageURL: the URL is malformed, or could not be fetched
	// (DNS failure, connection error, timeout, HTTP error status, too many
	// redirects).
	ReasonInvalidImageURL = "invalid_image_url"
)

// Error is why an image could not be loaded. Reason is one of the Reason
// constants, Message says what is wrong and, for a limit, the limit and the
// value, in words for the API caller. Err, when set, is the underlying
// cause (a decoder's error, a network error).
type Error struct {
	Reason  string
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// APIError is the 400 invalid_request_error for this error, with param the
// place of the image in the request (see Param), which the message names too.
func (e *Error) APIError(param string) *api.Error {
	if param == "" {
		return api.InvalidRequest(e.Reason, "", "%s", e.Message)
	}
	return api.InvalidRequest(e.Reason, param, "%s: %s", param, e.Message)
}

// Param is the param of the image part j of message i of a chat request:
// "messages[i].content[j].image_url".
func Param(message, part int) string {
	return fmt.Sprintf("messages[%d].content[%d].image_url", message, part)
}

// APIError turns any non-nil error from Load into the error to send: an
// *Error becomes its 400 (see Error.APIError). Load returns the caller's own
// context error unwrapped when that context ends (the client went away or the
// request's deadline passed); that becomes a 400 invalid_image_url saying so,
// which a handler whose client has gone need not send. Anything else (none is
// expected) is a 500.
func APIError(err error, param string) *api.Error {
	var me *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me):
		return me.APIError(param)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return (&Error{Reason: ReasonInvalidImageURL, Message: "the request ended before the image was loaded: " + err.Error()}).APIError(param)
	}
	return api.Internal("loading the image at %s: %v", param, err)
}

func newError(reason string, cause error, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...), Err: cause}
}
