// Package sse reads and writes server-sent events (text/event-stream) as the
// OpenAI and Anthropic streaming APIs use them: one JSON document per event,
// OpenAI's streams ending with "data: [DONE]". The HTTP server, the upstream
// client and the load generator all speak it through this package.
package sse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Done is the data of the event that ends an OpenAI stream.
const Done = "[DONE]"

// Writer writes events to an HTTP response, flushing each one so the client
// sees it at once. The status line and headers are written with the first
// event, so an error found before any event can still be sent as an
// ordinary HTTP error response.
type Writer struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	err     error
}

// NewWriter returns a Writer on w.
func NewWriter(w http.ResponseWriter) *Writer {
	return &Writer{w: w, rc: http.NewResponseController(w)}
}

// Started reports whether the headers have been written (some event was).
func (w *Writer) Started() bool { return w.started }

// Err is the first write error (the client went away), or nil.
func (w *Writer) Err() error { return w.err }

func (w *Writer) start() {
	if w.started {
		return
	}
	w.started = true
	h := w.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.w.WriteHeader(http.StatusOK)
}

// Event writes one event: an "event:" line when name is not empty, one
// "data:" line per line of data, and the blank line that ends it. After a
// write error it does nothing and returns that error.
func (w *Writer) Event(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	w.start()
	var b bytes.Buffer
	if name != "" {
		b.WriteString("event: ")
		b.WriteString(name)
		b.WriteByte('\n')
	}
	for {
		line, rest, more := bytes.Cut(data, []byte("\n"))
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
		if !more {
			break
		}
		data = rest
	}
	b.WriteByte('\n')
	if _, err := w.w.Write(b.Bytes()); err != nil {
		w.err = err
		return err
	}
	if err := w.rc.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

// Data writes an unnamed event.
func (w *Writer) Data(data []byte) error { return w.Event("", data) }

// JSON writes v, marshalled, as an unnamed event.
func (w *Writer) JSON(v any) error {
	if w.err != nil {
		return w.err
	}
	b, err := json.Marshal(v)
	if err != nil {
		w.err = fmt.Errorf("sse: encoding an event: %w", err)
		return w.err
	}
	return w.Data(b)
}

// Done writes "data: [DONE]", the end of an OpenAI stream.
func (w *Writer) Done() error { return w.Data([]byte(Done)) }

// Event is one event read from a stream.
type Event struct {
	// Name is the "event:" field; empty for an unnamed event.
	Name string
	// Data is the "data:" lines joined with "\n".
	Data string
	// ID is the "id:" field, if any.
	ID string
}

// DefaultMaxLine is the longest line a Reader accepts unless told otherwise.
const DefaultMaxLine = 4 << 20

// ErrLineTooLong is returned for a line over the Reader's limit.
var ErrLineTooLong = errors.New("sse: line too long")

// Reader reads events from a text/event-stream body. Comment lines (": …",
// which servers such as OpenRouter send to keep a connection alive) and
// "retry:" fields are skipped; lines may end in "\n", "\r\n" or "\r".
type Reader struct {
	br      *bufio.Reader
	maxLine int
	queue   []string // lines split off a '\r'-separated read
}

// NewReader returns a Reader of r whose lines may be up to maxLine bytes
// (0: DefaultMaxLine).
func NewReader(r io.Reader, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Reader{br: bufio.NewReaderSize(r, 64<<10), maxLine: maxLine}
}

// Next returns the next event. At the end of the stream it returns io.EOF;
// an event whose closing blank line the stream lacks is still returned
// first. A line longer than the limit is ErrLineTooLong (wrapped, with the
// limit).
func (r *Reader) Next() (Event, error) {
	var ev Event
	var data []string
	has := false
	for {
		line, err := r.line()
		if err != nil {
			if err == io.EOF && has {
				ev.Data = joinLines(data)
				return ev, nil
			}
			return Event{}, err
		}
		if line == "" {
			if has {
				ev.Data = joinLines(data)
				return ev, nil
			}
			ev = Event{}
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		field, value, _ := cutField(line)
		switch field {
		case "data":
			data = append(data, value)
			has = true
		case "event":
			ev.Name = value
		case "id":
			ev.ID = value
		}
	}
}

func joinLines(ls []string) string {
	if len(ls) == 1 {
		return ls[0]
	}
	var b bytes.Buffer
	for i, l := range ls {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return b.String()
}

// cutField splits "field: value" (one optional space after the colon).
func cutField(line string) (field, value string, ok bool) {
	i := bytes.IndexByte([]byte(line), ':')
	if i < 0 {
		return line, "", false
	}
	field, value = line[:i], line[i+1:]
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	return field, value, true
}

// line reads one line without its end.
func (r *Reader) line() (string, error) {
	if len(r.queue) > 0 {
		l := r.queue[0]
		r.queue = r.queue[1:]
		return l, nil
	}
	var b []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > r.maxLine+2 { // the line end itself is allowed
			return "", fmt.Errorf("%w: over %d bytes", ErrLineTooLong, r.maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && (err != io.EOF || len(b) == 0) {
			return "", err
		}
		break
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if bytes.IndexByte(b, '\r') < 0 {
		return string(b), nil
	}
	// Lines ended by a lone '\r' (allowed by the format, rare in practice).
	parts := bytes.Split(b, []byte("\r"))
	for _, p := range parts[1:] {
		r.queue = append(r.queue, string(p))
	}
	return string(parts[0]), nil
}
