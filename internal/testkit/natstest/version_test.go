package natstest

import "testing"

func TestOlderThan(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"2.9.10", "2.10.14", true},
		{"2.10.14", "2.10.14", false},
		{"v2.15.2", "2.10.14", false},
		{"2.10.2", "2.10.14", true},
		{"2.11", "2.10.14", false},
	} {
		if got := olderThan(c.a, c.b); got != c.want {
			t.Errorf("olderThan(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
