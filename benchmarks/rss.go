package benchmarks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// childEnv carries the job of a child process started by the peak-rss case.
const childEnv = "RELAYBENCH_CHILD"

type childJob struct {
	Impl   string
	Params Params
}

// MaybeRunChild runs the job of a peak-rss child process and exits, when the
// process is one; otherwise it returns at once. Call it first in main (and in
// TestMain of a test binary that runs the peak-rss case).
func MaybeRunChild() {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	if err := runChild(spec); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(spec string) error {
	var job childJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		return err
	}
	for _, impl := range Impls() {
		if impl.Name() == job.Impl {
			res, err := RunCase(context.Background(), &Env{}, impl, CaseEndToEnd, job.Params)
			if err != nil {
				return err
			}
			res.PeakRSS = selfPeakRSS()
			return json.NewEncoder(os.Stdout).Encode(res)
		}
	}
	return fmt.Errorf("unknown implementation %q", job.Impl)
}

// runPeakRSS runs an end-to-end run of p.N messages on a memory
// implementation in a child process (this executable again) and reports the
// child's peak resident set size, which only that run shaped.
func runPeakRSS(ctx context.Context, impl Impl, p Params) (Result, error) {
	res := Result{Impl: impl.Name(), Case: CasePeakRSS}
	if impl.System != "memory" {
		return res, ErrNotApplicable
	}
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	spec, _ := json.Marshal(childJob{Impl: impl.Name(), Params: p})
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("%s peak-rss child: %w: %s", impl.Name(), err, strings.TrimSpace(stderr.String()))
	}
	var child Result
	if err := json.Unmarshal(stdout.Bytes(), &child); err != nil {
		return res, fmt.Errorf("%s peak-rss child output %q: %w", impl.Name(), stdout.String(), err)
	}
	child.Case = CasePeakRSS
	if child.PeakRSS == 0 {
		// Not Linux: rusage's figure, which may include the parent's pages
		// from before exec.
		child.PeakRSS = maxRSS(cmd.ProcessState)
	}
	return child, nil
}

// selfPeakRSS returns this process's peak resident set size in bytes (Linux's
// VmHWM), or 0 where /proc is missing. The child measures itself because on
// Linux the rusage maximum of a child includes the pages it shared with its
// parent before exec, which inflated every figure to the parent's size.
func selfPeakRSS() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err == nil {
				return kib * 1024
			}
		}
	}
	return 0
}
