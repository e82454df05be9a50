package sse

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	cases := []struct {
		name, in string
		want     []Event
		err      error // after the events; nil means io.EOF
	}{
		{"openai", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []Event{{Data: `{"a":1}`}, {Data: Done}}, nil},
		{"crlf", "data: x\r\n\r\ndata: y\r\n\r\n", []Event{{Data: "x"}, {Data: "y"}}, nil},
		{"lone cr", "data: x\r\rdata: y\r\r", []Event{{Data: "x"}, {Data: "y"}}, nil},
		{"comments and retry", ": OPENROUTER PROCESSING\n\nretry: 10\ndata: x\n\n", []Event{{Data: "x"}}, nil},
		{"multi-line data", "data: a\ndata: b\n\n", []Event{{Data: "a\nb"}}, nil},
		{"named", "event: message_start\ndata: {}\nid: 7\n\n", []Event{{Name: "message_start", Data: "{}", ID: "7"}}, nil},
		{"no space after colon", "data:x\n\n", []Event{{Data: "x"}}, nil},
		{"two spaces keep one", "data:  x\n\n", []Event{{Data: " x"}}, nil},
		{"empty data", "data:\n\n", []Event{{Data: ""}}, nil},
		{"blank lines between", "\n\n\ndata: x\n\n\n\n", []Event{{Data: "x"}}, nil},
		{"event without data is dropped", "event: ping\n\ndata: x\n\n", []Event{{Data: "x"}}, nil},
		{"missing final blank line", "data: x\n\ndata: y", []Event{{Data: "x"}, {Data: "y"}}, nil},
		{"line too long", "data: " + strings.Repeat("x", 100) + "\n\n", nil, ErrLineTooLong},
		{"empty", "", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in), 64)
			var got []Event
			var err error
			for {
				var ev Event
				ev, err = r.Next()
				if err != nil {
					break
				}
				got = append(got, ev)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events %+v, want %+v", got, tc.want)
			}
			want := tc.err
			if want == nil {
				want = io.EOF
			}
			if !errors.Is(err, want) {
				t.Errorf("error %v, want %v", err, want)
			}
		})
	}
}

// TestReaderLongLine: lines longer than the read buffer are joined.
func TestReaderLongLine(t *testing.T) {
	long := strings.Repeat("y", 200<<10)
	r := NewReader(strings.NewReader("data: "+long+"\n\n"), 0)
	ev, err := r.Next()
	if err != nil || ev.Data != long {
		t.Fatalf("got %d bytes, %v", len(ev.Data), err)
	}
}

func TestWriter(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewWriter(rec)
	if w.Started() {
		t.Fatal("started before any event")
	}
	if err := w.JSON(map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	w.Event("message_stop", []byte("{}\n{}"))
	w.Done()
	want := "data: {\"a\":1}\n\nevent: message_stop\ndata: {}\ndata: {}\n\ndata: [DONE]\n\n"
	if got := rec.Body.String(); got != want {
		t.Errorf("body %q, want %q", got, want)
	}
	if !rec.Flushed || rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/event-stream" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("flushed %v code %d headers %v", rec.Flushed, rec.Code, rec.Header())
	}
	// What it writes, Reader reads back.
	r := NewReader(strings.NewReader(want), 0)
	for _, w := range []Event{{Data: `{"a":1}`}, {Name: "message_stop", Data: "{}\n{}"}, {Data: Done}} {
		if ev, err := r.Next(); err != nil || ev != w {
			t.Errorf("read back %+v %v, want %+v", ev, err, w)
		}
	}
}

type failing struct{ *httptest.ResponseRecorder }

func (failing) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriterError(t *testing.T) {
	w := NewWriter(failing{httptest.NewRecorder()})
	if err := w.Data([]byte("x")); err == nil {
		t.Fatal("no error from a failing writer")
	}
	if err := w.Done(); err == nil || w.Err() == nil {
		t.Fatal("a later write forgot the error")
	}
	bad := NewWriter(httptest.NewRecorder())
	if err := bad.JSON(func() {}); err == nil || bad.Err() == nil {
		t.Fatal("an unencodable value was not an error")
	}
}
