package registry

import (
	"slices"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := New[int]("test: thing")
	r.Register("b", 2)
	r.Register("a", 1)
	if v, ok := r.Get("b"); !ok || v != 2 {
		t.Errorf("Get(b) = %v, %v", v, ok)
	}
	if _, ok := r.Get("c"); ok {
		t.Error("Get(c) found something")
	}
	if got := r.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Names() = %v", got)
	}
	defer func() {
		if p := recover(); p != "test: thing registered twice: a" {
			t.Errorf("registering twice: %v", p)
		}
	}()
	r.Register("a", 3)
}
