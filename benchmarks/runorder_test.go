package benchmarks

import (
	"slices"
	"testing"
)

func TestRunOrderTurnsTheFacesOfEachSystem(t *testing.T) {
	impls := []Impl{{System: "a", Face: "1"}, {System: "a", Face: "2"}, {System: "b", Face: "1"}, {System: "b", Face: "2"}, {System: "b", Face: "3"}}
	names := func(run int) []string {
		var out []string
		for _, i := range runOrder(impls, run) {
			out = append(out, i.Name())
		}
		return out
	}
	for run, want := range map[int][]string{
		1: {"a/1", "a/2", "b/1", "b/2", "b/3"},
		2: {"a/2", "a/1", "b/2", "b/3", "b/1"},
		3: {"a/1", "a/2", "b/3", "b/1", "b/2"},
	} {
		if got := names(run); !slices.Equal(got, want) {
			t.Errorf("run %d: order %v, want %v", run, got, want)
		}
	}
}
