package fuzzkv

import (
	"maps"
	"testing"
)

func TestMapInvertsBytes(t *testing.T) {
	tests := []struct {
		name string
		kv   []string
		want map[string]string
	}{
		{name: "empty", kv: nil, want: nil},
		{name: "two entries", kv: []string{"a", "1", "", "x"}, want: map[string]string{"a": "1", "": "x"}},
		{name: "key without value", kv: []string{"k"}, want: map[string]string{"k": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Map(Bytes(tt.kv...)); !maps.Equal(got, tt.want) {
				t.Fatalf("Map(Bytes(%q)) = %q, want %q", tt.kv, got, tt.want)
			}
		})
	}
}

func TestMapCutsLengthsToInput(t *testing.T) {
	if got := Map([]byte{200, 'a'}); !maps.Equal(got, map[string]string{"a": ""}) {
		t.Fatalf("Map of a truncated entry = %q", got)
	}
}
