package faulttest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/pubsubtest"
)

// Environment of the delayed-publisher helper process, besides envAddr,
// envTopic and envGroup.
const (
	envMode  = "RELAY_FAULT_MODE" // "delayed-publisher"; empty for the consumer of RunConsumerCrash
	envCount = "RELAY_FAULT_COUNT"
	envDueAt = "RELAY_FAULT_DUE_AT" // RFC 3339 with nanoseconds
)

const modeDelayedPublisher = "delayed-publisher"

// delayedPublisherProcess is [HelperProcess] as the child of
// [RunDelayedPublisherCrash]: it schedules the messages 0..count-1 with
// PublishAt for the due time in its environment, printing "SCHEDULED id"
// once each PublishAt returned nil, then "ALL", and waits to be killed.
func delayedPublisherProcess(t *testing.T, nb NewBrokerFunc) {
	count, err1 := strconv.Atoi(os.Getenv(envCount))
	due, err2 := time.Parse(time.RFC3339Nano, os.Getenv(envDueAt))
	if err1 != nil || err2 != nil {
		fmt.Println("FAIL bad helper environment")
		os.Exit(2)
	}
	br, err := nb(t, os.Getenv(envAddr), pubsubtest.Config{Group: os.Getenv(envGroup), MaxDeliver: 5,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Concurrency: 1, AckWait: time.Second})
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	dp, ok := br.(relay.DelayedPublisher)
	if !ok {
		fmt.Printf("FAIL %T does not implement relay.DelayedPublisher\n", br)
		os.Exit(2)
	}
	for id := range count {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := dp.PublishAt(ctx, os.Getenv(envTopic), Payload(id), due)
		cancel()
		if err != nil {
			fmt.Printf("UNSCHEDULED %d %v\n", id, err)
			continue
		}
		fmt.Printf("SCHEDULED %d\n", id)
	}
	fmt.Println("ALL")
	time.Sleep(5 * time.Minute) // until SIGKILL; a parent that forgot leaves no orphan for long
	os.Exit(3)
}

// RunDelayedPublisherCrash checks that a delayed message outlives the process
// that published it: a child process schedules messages for a due time a few
// seconds ahead and is killed with SIGKILL as soon as every PublishAt has
// returned, before the due time. A consumer of the group in the test process,
// subscribed before the child started (as in a deployment, where consumers
// run while publishers come and go), must get every scheduled message, none
// before its due time. On Redis the consumer's process moves them from the
// topic's sorted set into the stream, since the child's mover died with it;
// on JetStream the server fires the schedules.
//
// Budget: 200 messages (full: 2,000), due 3 s (full: 10 s) after the child
// starts; all must arrive within 30 s of the due time. It needs a server,
// b.Helper and a backend whose broker implements [relay.DelayedPublisher]
// on that server; it skips otherwise.
func RunDelayedPublisherCrash(t *testing.T, b Backend) {
	if b.Server == nil || !b.Helper {
		t.Skip("faulttest: the delayed-publisher crash needs a server and a helper process")
	}
	n := pick(200, 2000)
	lead := pick(3*time.Second, 10*time.Second)
	topic, group := names(t, b)
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 5, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Concurrency: 16, AckWait: time.Second}
	addr := addrOf(b)
	l := NewLedger()

	var mu sync.Mutex
	early := 0
	due := time.Now().Add(lead)
	cons := newBroker(t, b, addr, cfg)
	defer closeBroker(t, cons)
	if _, ok := cons.(relay.DelayedPublisher); !ok {
		t.Skipf("faulttest: %T does not implement relay.DelayedPublisher", cons)
	}
	if err := cons.Subscribe(topic, func(p []byte) error {
		if time.Now().Before(due) {
			mu.Lock()
			early++
			mu.Unlock()
		}
		id := idOf(t, p)
		l.Attempt(id)
		l.Handled(id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultHelperProcess$")
	cmd.Env = append(os.Environ(), envHelper+"=1", envMode+"="+modeDelayedPublisher, envAddr+"="+addr,
		envTopic+"="+topic, envGroup+"="+group, envCount+"="+strconv.Itoa(n), envDueAt+"="+due.Format(time.RFC3339Nano))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	all := make(chan struct{})
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			kind, rest, _ := strings.Cut(line, " ")
			switch kind {
			case "SCHEDULED":
				if id, err := strconv.Atoi(rest); err == nil {
					l.Published(id, nil)
				}
			case "UNSCHEDULED":
				num, msg, _ := strings.Cut(rest, " ")
				if id, err := strconv.Atoi(num); err == nil {
					l.Published(id, fmt.Errorf("%s", msg))
				}
			case "ALL":
				close(all)
			case "FAIL":
				t.Errorf("helper process: %s", line)
			}
		}
	}()
	select {
	case <-all:
	case <-eof:
		t.Fatal("helper process ended before it had scheduled every message")
	case <-time.After(lead + 30*time.Second):
		t.Fatal("helper process did not schedule its messages within 30 s of the due time")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	cmd.Wait()
	killed = true
	<-eof
	if killedAt.After(due) {
		t.Logf("scheduling took until %v after the due time: the child was killed late, the case checks less", killedAt.Sub(due))
	}
	if failed := l.Failed(); failed > 0 {
		t.Errorf("%d of %d PublishAt calls failed in the child", failed, n)
	}

	ids := l.Confirmed()
	if !waitFor(time.Until(due)+30*time.Second, func() bool { return len(l.Missing(ids)) == 0 }) {
		t.Fatalf("%d of %d scheduled messages not delivered within 30 s of their due time, e.g. %v",
			len(l.Missing(ids)), len(ids), head(l.Missing(ids)))
	}
	recovery := time.Since(due)
	mu.Lock()
	if early > 0 {
		t.Errorf("%d messages delivered before their due time", early)
	}
	mu.Unlock()
	messages, lost, dups := l.Tally()
	if lost != 0 {
		t.Errorf("lost %d messages", lost)
	}
	report(t, "delayed-publisher-crash", b, messages, lost, dups, recovery,
		fmt.Sprintf("lead=%s killed_before_due=%s", lead, due.Sub(killedAt).Round(time.Millisecond)))
}
