// Package registry is a name-to-constructor table that packages fill at
// init (model architectures, vision projector types).
package registry

import (
	"sort"
	"sync"
)

// Registry maps names to values; its methods are safe for concurrent use.
type Registry[T any] struct {
	what string // what a name names, for the duplicate panic ("model: architecture")
	mu   sync.RWMutex
	m    map[string]T
}

// New makes an empty registry of what (e.g. "model: architecture").
func New[T any](what string) *Registry[T] {
	return &Registry[T]{what: what, m: map[string]T{}}
}

// Register adds v under name; a name registered twice is a programming
// error and panics.
func (r *Registry[T]) Register(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic(r.what + " registered twice: " + name)
	}
	r.m[name] = v
}

// Get returns the value under name.
func (r *Registry[T]) Get(name string) (T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.m[name]
	return v, ok
}

// Names lists the registered names, sorted.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
