package upstream

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"github.com/stepflash/stepflash/api"
)

// Routing picks which replica of a model answers a request.
type Routing string

const (
	// Prefix hashes the opening of the conversation onto a ring of
	// replicas, so the turns of one conversation land where its prefix is
	// cached; a replica already carrying more than LoadFactor × the mean
	// load passes the request on around the ring (consistent hashing with
	// bounded loads, Mirrokni, Thorup and Zadimoghaddam 2018).
	Prefix Routing = "prefix"
	// RoundRobin takes the replicas in turn.
	RoundRobin Routing = "round_robin"
	// Ordered takes the first healthy upstream in configuration order: a
	// primary and its fallbacks.
	Ordered Routing = "ordered"
)

// ParseRouting validates a routing name ("" is Prefix).
func ParseRouting(s string) (Routing, error) {
	switch Routing(s) {
	case "":
		return Prefix, nil
	case Prefix, RoundRobin, Ordered:
		return Routing(s), nil
	}
	return "", fmt.Errorf("routing %q: allowed values are prefix, round_robin, ordered", s)
}

// DefaultPrefixChars is how much of a conversation's opening the prefix key
// reads.
const DefaultPrefixChars = 4096

// chatKey is the routing key of a chat request: its system messages and
// first user message (the opening every later turn repeats), at most limit
// bytes of it. Remote servers tokenize their own way, so the key is text.
func chatKey(req *api.ChatCompletionRequest, limit int) string {
	var b strings.Builder
	for _, m := range req.Messages {
		b.WriteString(m.Role)
		b.WriteByte(0)
		if m.Content.IsParts {
			for _, p := range m.Content.Parts {
				b.WriteString(p.Text)
				b.Write(p.ImageURL)
			}
		} else {
			b.WriteString(m.Content.Text)
		}
		b.WriteByte(0)
		if b.Len() >= limit || m.Role == "user" {
			break
		}
	}
	s := b.String()
	if len(s) > limit {
		s = s[:limit]
	}
	return s
}

// completionKey is the routing key of a legacy completion: the first limit
// bytes of its (first) prompt.
func completionKey(req *api.CompletionRequest, limit int) string {
	var s string
	switch {
	case req.Prompt == nil:
	case len(req.Prompt.Texts) > 0:
		s = req.Prompt.Texts[0]
	case len(req.Prompt.Tokens) > 0:
		var b strings.Builder
		for _, id := range req.Prompt.Tokens[0] {
			fmt.Fprintf(&b, "%d,", id)
		}
		s = b.String()
	}
	if len(s) > limit {
		s = s[:limit]
	}
	return s
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return mix(h.Sum64())
}

// mix spreads FNV's output over the ring (FNV-1a of short, similar
// strings clusters; this is the finalizer of SplitMix64).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// vnodes is the number of points each replica has on the ring.
const vnodes = 160

// ring is a consistent-hash ring over member names.
type ring struct {
	points []uint64
	owner  []int // member index of each point
}

func newRing(names []string) *ring {
	r := &ring{}
	type pt struct {
		h uint64
		m int
	}
	var pts []pt
	for i, n := range names {
		for v := range vnodes {
			pts = append(pts, pt{hash64(fmt.Sprintf("%s#%d", n, v)), i})
		}
	}
	slices.SortFunc(pts, func(a, b pt) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return a.m - b.m
	})
	for _, p := range pts {
		r.points = append(r.points, p.h)
		r.owner = append(r.owner, p.m)
	}
	return r
}

// walk calls visit with each member in ring order from key's point, each
// member once, until visit returns true.
func (r *ring) walk(key uint64, members int, visit func(m int) bool) {
	if len(r.points) == 0 {
		return
	}
	start, _ := slices.BinarySearch(r.points, key)
	seen := make([]bool, members)
	left := members
	for i := 0; i < len(r.points) && left > 0; i++ {
		m := r.owner[(start+i)%len(r.points)]
		if seen[m] {
			continue
		}
		seen[m] = true
		left--
		if visit(m) {
			return
		}
	}
}

// capacity is the bounded-load limit: a replica may carry at most
// ceil(factor × (load+1) / n) requests, counting the one being placed.
func capacity(totalLoad, n int, factor float64) int {
	if n == 0 {
		return 0
	}
	return int(math.Ceil(factor * float64(totalLoad+1) / float64(n)))
}
