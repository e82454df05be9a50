package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/effort"
)

// decodeBody reads a JSON object body into dst (a pointer to a request
// struct). Keys dst does not declare are 400 unsupported_parameter, so that
// no field is ever accepted and silently ignored; malformed JSON is 400
// invalid_json; a value of the wrong type is 400 invalid_type naming it; a
// body over the limit is 413; a Content-Type other than JSON is 415
// (checkContentType); a body that does not arrive within the read timeout
// is 408.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, dst any) *api.Error {
	if e := s.checkContentType(r); e != nil {
		return e
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		if isTimeout(err) {
			lingerOnClose(r)
			return s.bodyTimeout()
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.NewError(http.StatusRequestEntityTooLarge, api.TypeInvalidRequest, api.CodeRequestTooLarge, "",
				"The request body is larger than the limit of %d bytes.", mbe.Limit)
		}
		return api.InvalidRequest(api.CodeInvalidJSON, "", "could not read the request body: %v", err)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return api.InvalidRequest(api.CodeInvalidJSON, "", "The request body is empty; send a JSON object.")
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		msg := "invalid JSON"
		var se *json.SyntaxError
		if errors.As(err, &se) {
			msg = fmt.Sprintf("%v (at byte offset %d)", se, se.Offset)
		} else if err != nil {
			msg = err.Error()
		}
		return api.InvalidRequest(api.CodeInvalidJSON, "", "We could not parse the JSON body of your request: %s.", msg)
	}
	if body[0] != '{' {
		return api.InvalidRequest(api.CodeInvalidType, "", "The request body must be a JSON object, got %s.", api.JSONKind(body))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return api.InvalidRequest(api.CodeInvalidJSON, "", "We could not parse the JSON body of your request: %v.", err)
	}
	if e := checkKeys(raw, reflect.TypeOf(dst).Elem(), ""); e != nil {
		return e
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return typeError(err)
	}
	return nil
}

// typeError turns a json.Unmarshal error into a 400 invalid_type.
func typeError(err error) *api.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		param := te.Field
		if param == "reasoning_effort" {
			return api.InvalidRequest(api.CodeInvalidReasoning, param, "Invalid 'reasoning_effort': got %s; allowed values are %s.", article(te.Value), effort.Allowed())
		}
		return api.InvalidRequest(api.CodeInvalidType, param, "Invalid type for '%s': expected %s, but got %s.", param, api.TypeName(te.Type), article(te.Value))
	}
	return api.InvalidRequest(api.CodeInvalidType, "", "Invalid request body: %v.", err)
}

func article(kind string) string {
	switch kind {
	case "array", "object", "integer":
		return "an " + kind
	case "null":
		return "null"
	}
	if strings.HasPrefix(kind, "number") {
		return "a number"
	}
	return "a " + kind
}

var keysCache sync.Map // reflect.Type -> map[string]reflect.Type

// jsonKeys returns the JSON keys a struct type declares, with their types.
func jsonKeys(t reflect.Type) map[string]reflect.Type {
	if v, ok := keysCache.Load(t); ok {
		return v.(map[string]reflect.Type)
	}
	keys := map[string]reflect.Type{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys[name] = f.Type
	}
	keysCache.Store(t, keys)
	return keys
}

// nested are the object-valued fields whose keys are checked too.
var nested = map[reflect.Type]bool{
	reflect.TypeFor[api.Message]():        true,
	reflect.TypeFor[api.ContentPart]():    true,
	reflect.TypeFor[api.Tool]():           true,
	reflect.TypeFor[api.ToolFunction]():   true,
	reflect.TypeFor[api.ToolCall]():       true,
	reflect.TypeFor[api.FunctionCall]():   true,
	reflect.TypeFor[api.StreamOptions]():  true,
	reflect.TypeFor[api.ResponseFormat](): true,
}

// checkKeys reports the first key (in sorted order) of raw that t does not
// declare, recursing into messages, content parts, tools and tool calls.
func checkKeys(raw map[string]json.RawMessage, t reflect.Type, path string) *api.Error {
	known := jsonKeys(t)
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ft, ok := known[k]
		p := k
		if path != "" {
			p = path + "." + k
		}
		if !ok {
			return api.Unsupported(p, "Unrecognized request argument supplied: %s. stepflash does not support this parameter.", p)
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		elem, list := ft, false
		if ft.Kind() == reflect.Slice {
			elem, list = ft.Elem(), true
		}
		if !nested[elem] {
			if elem == reflect.TypeFor[api.MessageContent]() {
				if e := checkParts(raw[k], p); e != nil {
					return e
				}
			}
			continue
		}
		if list {
			var items []json.RawMessage
			if json.Unmarshal(raw[k], &items) != nil {
				continue // the typed decode reports it
			}
			for i, it := range items {
				var m map[string]json.RawMessage
				if json.Unmarshal(it, &m) != nil {
					continue
				}
				if e := checkKeys(m, elem, fmt.Sprintf("%s[%d]", p, i)); e != nil {
					return e
				}
			}
			continue
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw[k], &m) == nil {
			if e := checkKeys(m, elem, p); e != nil {
				return e
			}
		}
	}
	return nil
}

func checkParts(raw json.RawMessage, path string) *api.Error {
	var items []map[string]json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	for i, m := range items {
		if e := checkKeys(m, reflect.TypeFor[api.ContentPart](), fmt.Sprintf("%s[%d]", path, i)); e != nil {
			return e
		}
	}
	return nil
}
