package exampleenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireRedisServer skips the test without redis-server on PATH, except
// under CI=true, where the server must be there and the test fails.
func RequireRedisServer(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on PATH (CI must install it)")
		}
		t.Skip("redis-server is not on PATH: install it to run this case")
	}
}

// WantInOrder fails the test unless every string of want is found in a line
// of out, each in a later line than the one before.
func WantInOrder(t testing.TB, out string, want []string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	i := 0
	for _, w := range want {
		for i < len(lines) && !strings.Contains(lines[i], w) {
			i++
		}
		if i == len(lines) {
			t.Fatalf("output lacks %q (in this order):\n%s", w, out)
		}
		i++
	}
}
