package backend

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/stepflash/stepflash/api"
	"github.com/stepflash/stepflash/effort"
)

// Limits are the server's bounds on a request.
type Limits struct {
	// MaxN is the most choices per request (n, times the prompts of a
	// legacy completion).
	MaxN int
	// Advisor is whether the served model has an advisor ("advisor":
	// "always" is a 400 without one).
	Advisor bool
}

// CheckChat validates what a chat request means on its own, whichever
// backend answers it: value ranges, the shapes of messages and tools,
// tool_choice against the tools, reasoning_effort and advisor values.
// What depends on the model (its vocabulary, context length, chat
// template) is the backend's to check.
func CheckChat(req *api.ChatCompletionRequest, lim Limits) *api.Error {
	maxTok, maxParam := req.MaxTokens, "max_tokens"
	if req.MaxCompletionTokens != nil {
		maxTok, maxParam = req.MaxCompletionTokens, "max_completion_tokens"
	}
	if e := checkCommon(common{
		MaxTokens: maxTok, MaxTokensParam: maxParam, Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		Stop: req.Stop, N: req.N, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
		LogitBias: req.LogitBias, Stream: req.Stream, StreamOptions: req.StreamOptions, Advisor: req.Advisor,
	}, lim); e != nil {
		return e
	}
	if req.TopLogprobs != nil {
		if *req.TopLogprobs < 0 || *req.TopLogprobs > 20 {
			return api.InvalidRequest(api.CodeInvalidValue, "top_logprobs", "Invalid 'top_logprobs': expected a value in [0, 20], but got %d instead.", *req.TopLogprobs)
		}
		if !req.Logprobs && *req.TopLogprobs > 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "top_logprobs", "Invalid 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is set.")
		}
	}
	if e := checkChatExtras(req); e != nil {
		return e
	}
	if e := CheckEffort(req.ReasoningEffort); e != nil {
		return e
	}
	if e := checkMessages(req.Messages); e != nil {
		return e
	}
	if e := checkTools(req.Tools); e != nil {
		return e
	}
	if tc := req.ToolChoice; tc != nil && tc.Mode != "" {
		switch tc.Mode {
		case "auto", "none":
		case "required":
			if len(req.Tools) == 0 {
				return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "Invalid 'tool_choice': \"required\" needs at least one tool in 'tools'.")
			}
		case "function":
			found := false
			for _, t := range req.Tools {
				found = found || t.Function.Name == tc.Function
			}
			if !found {
				return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "Invalid 'tool_choice': function %q is not among the 'tools'.", tc.Function)
			}
		default:
			return api.InvalidRequest(api.CodeInvalidValue, "tool_choice", "Invalid 'tool_choice' %q: allowed values are none, auto, required or a named function.", tc.Mode)
		}
	}
	if kw := req.ChatTemplateKwargs; len(kw) > 0 {
		for _, k := range []string{"messages", "tools", "add_generation_prompt"} {
			if _, bad := kw[k]; bad {
				return api.InvalidRequest(api.CodeInvalidValue, "chat_template_kwargs", "Invalid 'chat_template_kwargs': %q may not be set there.", k)
			}
		}
	}
	return nil
}

// CheckCompletion validates a legacy completion request as CheckChat does a
// chat request.
func CheckCompletion(req *api.CompletionRequest, lim Limits) *api.Error {
	if e := checkCommon(common{
		MaxTokens: req.MaxTokens, MaxTokensParam: "max_tokens", Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		Stop: req.Stop, N: req.N, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
		LogitBias: req.LogitBias, Stream: req.Stream, StreamOptions: req.StreamOptions, Advisor: req.Advisor,
	}, lim); e != nil {
		return e
	}
	n := 1
	if req.N != nil {
		n = *req.N
	}
	if req.Logprobs != nil && (*req.Logprobs < 0 || *req.Logprobs > 20) {
		return api.InvalidRequest(api.CodeInvalidValue, "logprobs", "Invalid 'logprobs': expected a value in [0, 20], but got %d instead.", *req.Logprobs)
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return api.Unsupported("suffix", "'suffix' (fill-in-the-middle) is not supported.")
	}
	if req.BestOf != nil && *req.BestOf != 1 && *req.BestOf != n {
		return api.Unsupported("best_of", "'best_of' other than 1 or n is not supported.")
	}
	if req.Echo && req.Logprobs != nil {
		return api.Unsupported("echo", "'echo' together with 'logprobs' (prompt log-probabilities) is not supported.")
	}
	if e := CheckEffort(req.ReasoningEffort); e != nil {
		return e
	}
	if req.Prompt == nil {
		return api.InvalidRequest(api.CodeMissingParameter, "prompt", "Missing required parameter: 'prompt'.")
	}
	prompts := len(req.Prompt.Texts) + len(req.Prompt.Tokens)
	if prompts == 0 {
		return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': it must not be empty.")
	}
	for i, ids := range req.Prompt.Tokens {
		if len(ids) == 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': prompt %d is empty.", i)
		}
		for k, id := range ids {
			if id < 0 {
				return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': token id %d at [%d][%d] is negative.", id, i, k)
			}
		}
	}
	if prompts*n > lim.maxN() {
		return api.InvalidRequest(api.CodeInvalidValue, "prompt", "Invalid 'prompt': %d prompts × n=%d is more than %d choices.", prompts, n, lim.maxN())
	}
	return nil
}

func (l Limits) maxN() int {
	if l.MaxN <= 0 {
		return 16
	}
	return l.MaxN
}

// CheckEffort validates a reasoning_effort value (nil: none given).
func CheckEffort(requested *string) *api.Error {
	if requested == nil {
		return nil
	}
	if *requested == "" {
		return api.InvalidRequest(api.CodeInvalidReasoning, "reasoning_effort", `invalid reasoning_effort "": allowed values are %s`, effort.Allowed())
	}
	if _, err := effort.Parse(*requested); err != nil {
		return api.InvalidRequest(api.CodeInvalidReasoning, "reasoning_effort", "%v", err)
	}
	return nil
}

// EffortLevel is the tier a checked reasoning_effort value asks for (the
// default when none), for the X-Reasoning-Effort header.
func EffortLevel(requested *string) effort.Level {
	if requested == nil {
		return effort.Default
	}
	l, err := effort.Parse(*requested)
	if err != nil {
		return effort.Default
	}
	return l
}

// common are the fields both endpoints share.
type common struct {
	MaxTokens        *int
	MaxTokensParam   string
	Temperature      *float64
	TopP             *float64
	TopK             *int
	MinP             *float64
	Stop             api.Stop
	N                *int
	PresencePenalty  *float64
	FrequencyPenalty *float64
	LogitBias        map[string]float64
	Stream           bool
	StreamOptions    *api.StreamOptions
	Advisor          *string
}

func checkCommon(c common, lim Limits) *api.Error {
	if c.MaxTokens != nil && *c.MaxTokens < 1 {
		return api.InvalidRequest(api.CodeInvalidValue, c.MaxTokensParam, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", c.MaxTokensParam, *c.MaxTokens)
	}
	if v := c.Temperature; v != nil && (*v < 0 || *v > 2) {
		return api.InvalidRequest(api.CodeInvalidValue, "temperature", "Invalid 'temperature': expected a value in [0, 2], but got %g instead.", *v)
	}
	if v := c.TopP; v != nil && (*v < 0 || *v > 1) {
		return api.InvalidRequest(api.CodeInvalidValue, "top_p", "Invalid 'top_p': expected a value in [0, 1], but got %g instead.", *v)
	}
	if v := c.TopK; v != nil && *v < -1 {
		return api.InvalidRequest(api.CodeInvalidValue, "top_k", "Invalid 'top_k': expected -1 or 0 (off) or a positive integer, but got %d instead.", *v)
	}
	if v := c.MinP; v != nil && (*v < 0 || *v > 1) {
		return api.InvalidRequest(api.CodeInvalidValue, "min_p", "Invalid 'min_p': expected a value in [0, 1], but got %g instead.", *v)
	}
	if c.N != nil && (*c.N < 1 || *c.N > lim.maxN()) {
		return api.InvalidRequest(api.CodeInvalidValue, "n", "Invalid 'n': expected a value in [1, %d], but got %d instead.", lim.maxN(), *c.N)
	}
	if len(c.Stop) > 4 {
		return api.InvalidRequest(api.CodeInvalidValue, "stop", "Invalid 'stop': at most 4 stop sequences are allowed, but got %d.", len(c.Stop))
	}
	for _, p := range []struct {
		name string
		v    *float64
	}{{"presence_penalty", c.PresencePenalty}, {"frequency_penalty", c.FrequencyPenalty}} {
		if p.v != nil && (*p.v < -2 || *p.v > 2) {
			return api.InvalidRequest(api.CodeInvalidValue, p.name, "Invalid '%s': expected a value in [-2, 2], but got %g instead.", p.name, *p.v)
		}
	}
	for _, k := range sortedStrings(c.LogitBias) {
		v := c.LogitBias[k]
		if id, err := strconv.ParseInt(k, 10, 32); err != nil || id < 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "logit_bias", "Invalid 'logit_bias': key %q is not a token id (a non-negative integer).", k)
		}
		if v < -100 || v > 100 {
			return api.InvalidRequest(api.CodeInvalidValue, "logit_bias", "Invalid 'logit_bias': the bias of token %s is %g; expected a value in [-100, 100].", k, v)
		}
	}
	if c.StreamOptions != nil {
		if !c.Stream {
			return api.InvalidRequest(api.CodeInvalidValue, "stream_options", "Invalid 'stream_options': only allowed when 'stream' is true.")
		}
		if c.StreamOptions.ContinuousUsageStats != nil && *c.StreamOptions.ContinuousUsageStats {
			return api.Unsupported("stream_options.continuous_usage_stats", "'stream_options.continuous_usage_stats' is not supported.")
		}
		if c.StreamOptions.IncludeObfuscation != nil && *c.StreamOptions.IncludeObfuscation {
			return api.Unsupported("stream_options.include_obfuscation", "'stream_options.include_obfuscation' is not supported.")
		}
	}
	if c.Advisor != nil {
		switch *c.Advisor {
		case "auto", "off":
		case "always":
			if !lim.Advisor {
				return api.InvalidRequest(api.CodeInvalidAdvisor, "advisor", "'advisor': \"always\" needs an advisor model, and this model has none configured (serve --advisor, or \"advisor\" in --config); auto and off are allowed.")
			}
		default:
			return api.InvalidRequest(api.CodeInvalidAdvisor, "advisor", "Invalid 'advisor' %q: allowed values are auto, off, always.", *c.Advisor)
		}
	}
	return nil
}

func sortedStrings(m map[string]float64) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys) // so that the error names the same key every time
	return keys
}

// JSONSchemaFormat is response_format.json_schema.
type JSONSchemaFormat struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ParseJSONSchemaFormat reads response_format.json_schema (the schema
// itself is judged by the backend that enforces it). A missing schema
// stands for any JSON object.
func ParseJSONSchemaFormat(raw json.RawMessage) (*JSONSchemaFormat, *api.Error) {
	const param = "response_format.json_schema"
	if len(raw) == 0 || string(raw) == "null" {
		return nil, api.InvalidRequest(api.CodeMissingParameter, param, "Missing required parameter: '%s'.", param)
	}
	var f JSONSchemaFormat
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, api.InvalidRequest(api.CodeInvalidValue, param, "Invalid '%s': %v.", param, err)
	}
	if f.Name == "" {
		return nil, api.InvalidRequest(api.CodeMissingParameter, param+".name", "Missing required parameter: '%s.name'.", param)
	}
	if len(f.Name) > 64 || strings.IndexFunc(f.Name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) >= 0 {
		return nil, api.InvalidRequest(api.CodeInvalidValue, param+".name", "Invalid '%s.name' %q: use at most 64 letters, digits, underscores and dashes.", param, f.Name)
	}
	switch s := strings.TrimSpace(string(f.Schema)); {
	case s == "" || s == "null":
		f.Schema = json.RawMessage(`{"type":"object"}`)
	case s[0] != '{':
		return nil, api.InvalidRequest(api.CodeInvalidValue, param+".schema", "Invalid '%s.schema': a JSON Schema must be an object.", param)
	}
	return &f, nil
}

// checkChatExtras validates the fields that have no engine counterpart.
func checkChatExtras(req *api.ChatCompletionRequest) *api.Error {
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text", "":
		case "json_object":
		case "json_schema":
			if _, e := ParseJSONSchemaFormat(rf.JSONSchema); e != nil {
				return e
			}
		default:
			return api.InvalidRequest(api.CodeInvalidValue, "response_format.type", "Invalid 'response_format.type' %q: allowed values are text, json_object, json_schema.", rf.Type)
		}
	}
	if req.Store != nil && *req.Store {
		return api.Unsupported("store", "'store': true is not supported (stepflash does not store completions).")
	}
	if req.ServiceTier != nil {
		switch *req.ServiceTier {
		case "auto", "default":
		default:
			return api.Unsupported("service_tier", "'service_tier' %q is not supported (only auto and default).", *req.ServiceTier)
		}
	}
	for _, mod := range req.Modalities {
		if mod != "text" {
			return api.Unsupported("modalities", "'modalities' %q is not supported (only text).", mod)
		}
	}
	return nil
}

// Roles maps the message roles a request may use to the roles of a chat
// template ("developer" is OpenAI's newer name for "system").
var Roles = map[string]string{"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}

// checkMessages validates the shape of the conversation.
func checkMessages(in []api.Message) *api.Error {
	if in == nil {
		return api.InvalidRequest(api.CodeMissingParameter, "messages", "Missing required parameter: 'messages'.")
	}
	if len(in) == 0 {
		return api.InvalidRequest(api.CodeInvalidValue, "messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	for i, m := range in {
		p := fmt.Sprintf("messages[%d]", i)
		role, ok := Roles[m.Role]
		if !ok {
			if m.Role == "" {
				return api.InvalidRequest(api.CodeMissingParameter, p+".role", "Missing required parameter: '%s.role'.", p)
			}
			return api.InvalidRequest(api.CodeInvalidValue, p+".role", "Invalid value %q for '%s.role': supported values are system, developer, user, assistant and tool.", m.Role, p)
		}
		for k, part := range m.Content.Parts {
			if part.Type == "" {
				return api.InvalidRequest(api.CodeMissingParameter, fmt.Sprintf("%s.content[%d].type", p, k), "Missing required parameter: '%s.content[%d].type'.", p, k)
			}
		}
		if m.Content.IsNull && role != "assistant" {
			return api.InvalidRequest(api.CodeMissingParameter, p+".content", "Missing required parameter: '%s.content'.", p)
		}
		if len(m.ToolCalls) > 0 && role != "assistant" {
			return api.InvalidRequest(api.CodeInvalidValue, p+".tool_calls", "Invalid '%s.tool_calls': only assistant messages make tool calls.", p)
		}
		for k, tc := range m.ToolCalls {
			if tc.Type != "" && tc.Type != "function" {
				return api.Unsupported(fmt.Sprintf("%s.tool_calls[%d].type", p, k), "Tool calls of type %q are not supported (only function).", tc.Type)
			}
		}
		if role == "tool" && m.ToolCallID == "" {
			return api.InvalidRequest(api.CodeMissingParameter, p+".tool_call_id", "Missing required parameter: '%s.tool_call_id'.", p)
		}
	}
	return nil
}

// checkTools validates tool definitions.
func checkTools(in []api.Tool) *api.Error {
	for i, t := range in {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			if t.Type == "" {
				return api.InvalidRequest(api.CodeMissingParameter, p+".type", "Missing required parameter: '%s.type'.", p)
			}
			return api.Unsupported(p+".type", "Tools of type %q are not supported (only function).", t.Type)
		}
		if strings.TrimSpace(t.Function.Name) == "" {
			return api.InvalidRequest(api.CodeMissingParameter, p+".function.name", "Missing required parameter: '%s.function.name'.", p)
		}
		if params := t.Function.Parameters; len(params) > 0 {
			var obj map[string]json.RawMessage
			if json.Unmarshal(params, &obj) != nil {
				return api.InvalidRequest(api.CodeInvalidType, p+".function.parameters", "Invalid type for '%s.function.parameters': expected a JSON Schema object.", p)
			}
		}
	}
	return nil
}

// MaxEmbeddingInputs is the most inputs one embeddings request may carry
// (OpenAI's limit).
const MaxEmbeddingInputs = 2048

// CheckEmbedding checks an embeddings request as OpenAI does: an input
// (a string, strings, token ids or arrays of them) of 1..2048 items, none
// empty, and a known encoding_format and dimensions.
func CheckEmbedding(req *api.EmbeddingRequest) *api.Error {
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return api.InvalidRequest(api.CodeInvalidValue, "encoding_format", "Invalid 'encoding_format': %q; use \"float\" or \"base64\".", req.EncodingFormat)
	}
	if d := req.Dimensions; d != nil && *d < 1 {
		return api.InvalidRequest(api.CodeInvalidValue, "dimensions", "Invalid 'dimensions': %d; it must be at least 1.", *d)
	}
	if req.Input == nil {
		return api.InvalidRequest(api.CodeMissingParameter, "input", "Missing required parameter: 'input'.")
	}
	n := len(req.Input.Texts) + len(req.Input.Tokens)
	switch {
	case n == 0:
		return api.InvalidRequest(api.CodeInvalidValue, "input", "Invalid 'input': it is an empty array; send at least one input.")
	case n > MaxEmbeddingInputs:
		return api.InvalidRequest(api.CodeInvalidValue, "input", "Invalid 'input': %d inputs; at most %d are accepted per request.", n, MaxEmbeddingInputs)
	}
	for i, t := range req.Input.Texts {
		if t == "" {
			return api.InvalidRequest(api.CodeInvalidValue, "input", "Invalid 'input': input %d is an empty string.", i)
		}
	}
	for i, ids := range req.Input.Tokens {
		if len(ids) == 0 {
			return api.InvalidRequest(api.CodeInvalidValue, "input", "Invalid 'input': input %d is an empty token array.", i)
		}
		for k, id := range ids {
			if id < 0 {
				return api.InvalidRequest(api.CodeInvalidValue, "input", "Invalid 'input': token id %d at [%d][%d] is negative.", id, i, k)
			}
		}
	}
	return nil
}
