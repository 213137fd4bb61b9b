package redistest_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-relay/relay/internal/testkit/redistest"
)

// TestSkipWithoutServer is run by TestMissingServerFailsThePackage in a child
// go test with no Redis to find; alone it does nothing.
func TestSkipWithoutServer(t *testing.T) {
	if os.Getenv("REDISTEST_CHILD") != "1" {
		return
	}
	redistest.Start(t)
	t.Error("Start returned without a server")
}

// In package-list mode (go test ./...) go test shows a package's output only
// when it fails, and an example that needs redis-server failed the package
// before anything said why. Without a server, a package whose TestMain uses
// Main must run its tests with the examples left out, print one line that
// says what was skipped and how to provide Redis, and fail, unless
// RELAY_SKIP_REDIS=1.
func TestMissingServerFailsThePackage(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "REDISTEST_CHILD=1", "PATH="+pathWithoutRedis(t), "CI=", "REDIS_URL=",
		"DOCKER_HOST=unix:///nonexistent", redistest.SkipEnv+"=")
	goTest := func(env []string) (string, error) {
		cmd := exec.Command(goBin, "test", "-count=1", "-run=^(TestSkipWithoutServer|ExampleRun)$", ".")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := goTest(env)
	const line = "redistest: FAIL: no Redis server (REDIS_URL is unset, redis-server is not on PATH, " +
		"no Docker engine answers): 1 test(s) skipped, 1 example(s) not run. Install redis-server"
	if !strings.Contains(out, line) {
		t.Errorf("go test printed no line %q:\n%s", line, out)
	}
	if !strings.Contains(out, redistest.SkipEnv+"=1") {
		t.Errorf("the line does not name %s:\n%s", redistest.SkipEnv, out)
	}
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) {
		t.Errorf("go test: want a non-zero exit, got %v:\n%s", err, out)
	}

	out, err = goTest(append(env, redistest.SkipEnv+"=1"))
	if err != nil {
		t.Errorf("go test with %s=1: %v:\n%s", redistest.SkipEnv, err, out)
	}
}

// pathWithoutRedis returns $PATH with each directory that holds redis-server
// or redis-cli replaced by one of symbolic links to all its other entries,
// so that go and the C compiler stay there.
func pathWithoutRedis(t *testing.T) string {
	t.Helper()
	dirs := filepath.SplitList(os.Getenv("PATH"))
	for i, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil || !slices.ContainsFunc(entries, func(e os.DirEntry) bool {
			return strings.HasPrefix(e.Name(), "redis-")
		}) {
			continue
		}
		shadow := t.TempDir()
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "redis-") {
				continue
			}
			if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(shadow, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		dirs[i] = shadow
	}
	return strings.Join(dirs, string(filepath.ListSeparator))
}
