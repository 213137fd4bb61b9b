package testkit

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fatalRecorder stands in for t: Fatalf records the message and ends the
// goroutine, as testing.T's does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder in a goroutine of its own and returns the
// message of its Fatalf, "" when it returned without one.
func run(f func(t testing.TB)) string {
	r := &fatalRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done // f returns or calls Goexit at once: the waits it makes are bounded by a millisecond
	return r.msg
}

func TestWaitHelpers(t *testing.T) {
	const d = time.Millisecond
	never := make(chan int)
	sent := make(chan int, 1)
	sent <- 7
	closed := make(chan int)
	close(closed)
	var idle, busy sync.WaitGroup
	busy.Add(1)
	defer busy.Done()
	tests := []struct {
		name string
		f    func(t testing.TB)
		want string // the start of the failure message, "" for none
	}{
		{name: "Receive returns a value sent", f: func(t testing.TB) {
			if v := Receive(t, sent, d, "value"); v != 7 {
				panic(v)
			}
		}},
		{name: "Receive returns on a closed channel", f: func(t testing.TB) { Receive(t, closed, d, "close") }},
		{name: "Receive fails when nothing comes", f: func(t testing.TB) { Receive(t, never, d, "handler %s called", "not") },
			want: "handler not called: nothing within 1ms"},
		{name: "Closed returns on a closed channel", f: func(t testing.TB) { Closed(t, closed, d, "channel") }},
		{name: "Closed fails on an open channel", f: func(t testing.TB) { Closed(t, never, d, "the output channel") },
			want: "the output channel: still open after 1ms"},
		{name: "Within returns when f does", f: func(t testing.TB) { Within(t, d, func() {}, "f") }},
		{name: "Within fails when f blocks", f: func(t testing.TB) { Within(t, d, func() { <-never }, "Close") },
			want: "Close: did not return within 1ms"},
		{name: "CloseWithin returns the error", f: func(t testing.TB) {
			if err := CloseWithin(t, d, func() error { return errors.New("x") }, "Close"); err == nil {
				panic("no error")
			}
		}},
		{name: "Wait returns on a done group", f: func(t testing.TB) { Wait(t, &idle, d, "workers") }},
		{name: "Wait fails on a busy group", f: func(t testing.TB) { Wait(t, &busy, d, "workers") },
			want: "workers: did not return within 1ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(tt.f)
			if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
				t.Errorf("failure message %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWaitExit(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	cmd := exec.Command(sleep, "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if msg := run(func(t testing.TB) { _ = WaitExit(t, cmd, 10*time.Second, "sleep 0") }); msg != "" {
		t.Errorf("a process that exits: %s", msg)
	}
	cmd = exec.Command(sleep, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	msg := run(func(t testing.TB) { _ = WaitExit(t, cmd, 10*time.Millisecond, "sleep %d", 60) })
	if want := "sleep 60: the process did not exit within 10ms, killed"; msg != want {
		t.Errorf("a process that does not exit: %q, want %q", msg, want)
	}
}
