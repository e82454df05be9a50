package hub

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line progress bar, redrawn with carriage returns at
// most every 200 ms.
type progress struct {
	w          io.Writer
	name       string
	start, cur int64
	total      int64
	began      time.Time
	last       time.Time
}

func newProgress(w io.Writer, name string, have, total int64) *progress {
	p := &progress{w: w, name: name, start: have, cur: have, total: total, began: time.Now()}
	p.draw(false)
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.cur += int64(len(b))
	if time.Since(p.last) >= 200*time.Millisecond {
		p.draw(false)
	}
	return len(b), nil
}

func (p *progress) done(ok bool) {
	p.draw(true)
	if p.w != nil {
		if ok {
			fmt.Fprintln(p.w)
		} else {
			fmt.Fprintln(p.w, " (interrupted)")
		}
	}
}

const mib = 1 << 20

func (p *progress) draw(final bool) {
	if p.w == nil {
		return
	}
	p.last = time.Now()
	el := time.Since(p.began).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.cur-p.start) / el
	}
	line := fmt.Sprintf("%s %7.1f MiB", p.name, float64(p.cur)/mib)
	if p.total > 0 {
		frac := min(float64(p.cur)/float64(p.total), 1)
		const width = 30
		n := int(frac * width)
		bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		eta := "--"
		if rate > 0 && !final {
			eta = (time.Duration(float64(p.total-p.cur)/rate) * time.Second).Round(time.Second).String()
		}
		line = fmt.Sprintf("%s %3.0f%% [%s] %.1f/%.1f MiB %6.1f MiB/s ETA %s", p.name, frac*100, bar, float64(p.cur)/mib, float64(p.total)/mib, rate/mib, eta)
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
}
