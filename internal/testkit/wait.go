package testkit

import (
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Receive returns the next value sent on ch, or the zero value once ch is
// closed. When neither happens within d it fails t with a message that
// starts with what did not happen (what is a fmt format for args), so that a
// broken backend fails the test within its own bound instead of hanging it
// until go test's -timeout. It must be called from the test's goroutine or a
// cleanup.
func Receive[T any](t testing.TB, ch <-chan T, d time.Duration, what string, args ...any) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("%s: nothing within %v", fmt.Sprintf(what, args...), d)
		panic("unreachable")
	}
}

// Closed waits until ch is closed, discarding what is sent on it meanwhile.
// When ch is still open after d it fails t with what did not happen (a fmt
// format for args). It must be called from the test's goroutine or a cleanup.
func Closed[T any](t testing.TB, ch <-chan T, d time.Duration, what string, args ...any) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case _, open := <-ch:
			if !open {
				return
			}
		case <-timer.C:
			t.Fatalf("%s: still open after %v", fmt.Sprintf(what, args...), d)
		}
	}
}

// Within runs f in a goroutine of its own and waits for it to return. When
// f has not returned after d it fails t with what did not happen (a fmt
// format for args) and leaves f's goroutine behind: the test has failed, and
// a goroutine blocked for ever is what the message reports. Use it for a
// call with no deadline of its own (a Close that waits for handlers, a
// WaitGroup's Wait, a child process's Wait). It must be called from the
// test's goroutine or a cleanup.
func Within(t testing.TB, d time.Duration, f func(), what string, args ...any) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		t.Fatalf("%s: did not return within %v", fmt.Sprintf(what, args...), d)
	}
}

// CloseWithin calls close, as [Within] does, and returns its error; it fails
// t when close has not returned after d. what names the closed thing, as in
// "broker Close at cleanup".
func CloseWithin(t testing.TB, d time.Duration, close func() error, what string, args ...any) error {
	t.Helper()
	var err error
	Within(t, d, func() { err = close() }, what, args...)
	return err
}

// Wait waits for wg, as [Within] does: it fails t with what did not happen
// when wg's count has not reached zero after d.
func Wait(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string, args ...any) {
	t.Helper()
	Within(t, d, wg.Wait, what, args...)
}

// WaitExit waits for the started cmd to exit, as cmd.Wait does, and returns
// Wait's error. When cmd is still running after d (a child that ignores its
// signal, or hangs) it kills cmd and fails t with what did not happen (a fmt
// format for args), so that neither the test nor the child outlives the
// bound. It must be called from the test's goroutine or a cleanup.
func WaitExit(t testing.TB, cmd *exec.Cmd, d time.Duration, what string, args ...any) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		_ = cmd.Process.Kill()
		t.Fatalf("%s: the process did not exit within %v, killed", fmt.Sprintf(what, args...), d)
		return nil
	}
}
