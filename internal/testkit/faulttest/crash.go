package faulttest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-relay/relay/pubsubtest"
)

// Environment of a helper process started by [RunConsumerCrash].
const (
	envHelper      = "RELAY_FAULT_HELPER"
	envAddr        = "RELAY_FAULT_ADDR"
	envTopic       = "RELAY_FAULT_TOPIC"
	envGroup       = "RELAY_FAULT_GROUP"
	envAckWait     = "RELAY_FAULT_ACK_WAIT"
	envConcurrency = "RELAY_FAULT_CONCURRENCY"
	envAckFirst    = "RELAY_FAULT_ACK_FIRST"
)

// HelperProcess is the body of the test TestFaultHelperProcess that every
// backend package with a server declares for [RunConsumerCrash]:
//
//	func TestFaultHelperProcess(t *testing.T) { faulttest.HelperProcess(t, newBroker) }
//
// Run normally, it skips. Run as a child of RunConsumerCrash (the test
// binary re-executed with -test.run=^TestFaultHelperProcess$ and
// RELAY_FAULT_HELPER=1, as os/exec's own tests do), it subscribes a consumer
// of the group given in the environment, lets the first handlers return nil
// (printing "DONE id"), then blocks every later handler forever (printing
// "HELD id"), until the parent kills it with SIGKILL.
func HelperProcess(t *testing.T, nb NewBrokerFunc) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("the child process of the consumer-crash and delayed-publisher-crash cases; runs only as their child")
	}
	if os.Getenv(envMode) == modeDelayedPublisher {
		delayedPublisherProcess(t, nb)
		return
	}
	ackWait, err1 := time.ParseDuration(os.Getenv(envAckWait))
	concurrency, err2 := strconv.Atoi(os.Getenv(envConcurrency))
	ackFirst, err3 := strconv.Atoi(os.Getenv(envAckFirst))
	if err1 != nil || err2 != nil || err3 != nil {
		fmt.Println("FAIL bad helper environment")
		os.Exit(2)
	}
	cfg := pubsubtest.Config{Group: os.Getenv(envGroup), MaxDeliver: 5, MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, Concurrency: concurrency, AckWait: ackWait}
	br, err := nb(t, os.Getenv(envAddr), cfg)
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	var calls atomic.Int64
	err = br.Subscribe(os.Getenv(envTopic), func(p []byte) error {
		id, err := ID(p)
		if err != nil {
			return err
		}
		if calls.Add(1) <= int64(ackFirst) {
			fmt.Printf("DONE %d\n", id) // one write: lines do not interleave
			return nil
		}
		fmt.Printf("HELD %d\n", id)
		select {} // until SIGKILL
	})
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	// Wait to be killed; a parent that forgot leaves no orphan for long.
	time.Sleep(5 * time.Minute)
	os.Exit(3)
}

// RunConsumerCrash runs a consumer of the group in a child process, which
// handles a few messages and then holds 8 in handlers that never return (and
// one more fetched ahead, waiting for a handler), and kills it with SIGKILL.
// A consumer of the same group in the test process must then get every one
// of them after the ack wait (JetStream) or claim timeout (Redis), here 1 s,
// and every message must be handled. Recovery is the time from the kill
// until the last held message was handled.
//
// Budget: 300 messages (full: 2,000), ack wait 1 s; the held messages must
// be handled within 20 s of the kill, all within 1 minute. It needs a server
// and b.Helper; it skips otherwise.
func RunConsumerCrash(t *testing.T, b Backend) {
	if b.Server == nil || !b.Helper {
		t.Skip("faulttest: the consumer-crash case needs a server and a helper process")
	}
	n := pick(300, 2000)
	const (
		concurrency = 8
		ackFirst    = 40
		ackWait     = time.Second
	)
	topic, group := names(t, b)
	cfg := pubsubtest.Config{Group: group, MaxDeliver: 5, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Concurrency: 16, AckWait: ackWait}
	addr := addrOf(b)
	l := NewLedger()

	pub := newBroker(t, b, addr, cfg)
	defer closeBroker(t, pub)
	publishAll(t, pub, topic, l, 0, n, 8, 10*time.Second)

	hc := startHelper(t, "TestFaultHelperProcess", addr, topic, group, l, n, ackWait, concurrency, ackFirst)
	heldIDs := hc.held

	// Another member of the group, running before the crash, as in a
	// deployment of several processes.
	cons := newBroker(t, b, addr, cfg)
	defer closeBroker(t, cons)
	if err := cons.Subscribe(topic, func(p []byte) error {
		id := idOf(t, p)
		l.Attempt(id)
		l.Handled(id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	killedAt := hc.kill(t)

	recoveryBound := ackWait + 20*time.Second
	if !waitFor(recoveryBound, func() bool { return len(l.Missing(heldIDs)) == 0 }) {
		t.Fatalf("%d of %d messages held by the killed consumer not redelivered within %s: %v",
			len(l.Missing(heldIDs)), len(heldIDs), recoveryBound, l.Missing(heldIDs))
	}
	recovery := time.Since(killedAt)
	ids := l.Confirmed()
	if !waitFor(time.Minute, func() bool { return len(l.Missing(ids)) == 0 }) {
		t.Errorf("%d of %d messages never handled, e.g. %v", len(l.Missing(ids)), n, head(l.Missing(ids)))
	}
	if recovery < ackWait/2 {
		t.Logf("held messages redelivered after %s, before the ack wait of %s", recovery, ackWait)
	}
	messages, lost, dups := l.Tally()
	if lost != 0 {
		t.Errorf("lost %d messages", lost)
	}
	report(t, "consumer-crash", b, messages, lost, dups, recovery,
		fmt.Sprintf("held=%d ack_wait=%s", len(heldIDs), ackWait))
}

// helperConsumer is a consumer in a child process started by startHelper.
type helperConsumer struct {
	cmd  *exec.Cmd
	eof  chan struct{} // closed when the child's output ended
	held []int         // the ids of the messages it holds in handlers
}

// startHelper runs the test run of the test binary (a test that calls
// [HelperProcess]) as a consumer of group on topic, whose client dials addr,
// and returns once it holds concurrency messages in handlers that never
// return, having handled ackFirst before; its lines go into l. The child is
// killed in t.Cleanup if [helperConsumer.kill] did not kill it.
func startHelper(t *testing.T, run, addr, topic, group string, l *Ledger, n int, ackWait time.Duration, concurrency, ackFirst int) *helperConsumer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$")
	cmd.Env = append(os.Environ(), envHelper+"=1", envAddr+"="+addr, envTopic+"="+topic, envGroup+"="+group,
		envAckWait+"="+ackWait.String(), envConcurrency+"="+strconv.Itoa(concurrency), envAckFirst+"="+strconv.Itoa(ackFirst))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hc := &helperConsumer{cmd: cmd, eof: make(chan struct{})}
	t.Cleanup(func() {
		if hc.cmd != nil {
			hc.cmd.Process.Kill()
			hc.cmd.Wait()
		}
	})

	held := make(chan int, n)
	go func() {
		defer close(hc.eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			kind, num, _ := strings.Cut(sc.Text(), " ")
			id, err := strconv.Atoi(num)
			switch {
			case kind == "DONE" && err == nil:
				l.Attempt(id)
				l.Handled(id)
			case kind == "HELD" && err == nil:
				l.Attempt(id)
				held <- id
			case strings.HasPrefix(sc.Text(), "FAIL"):
				t.Errorf("helper process: %s", sc.Text())
			}
		}
	}()

	deadline := time.After(30 * time.Second)
	for len(hc.held) < concurrency {
		select {
		case id := <-held:
			hc.held = append(hc.held, id)
		case <-hc.eof:
			t.Fatalf("helper process ended after holding %d messages", len(hc.held))
		case <-deadline:
			t.Fatalf("helper process held %d messages after 30 s, want %d", len(hc.held), concurrency)
		}
	}
	return hc
}

// kill kills the child with SIGKILL and returns the time it did, once every
// line the child wrote is in the ledger.
func (hc *helperConsumer) kill(t *testing.T) time.Time {
	t.Helper()
	if err := hc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	hc.cmd.Wait()
	hc.cmd = nil
	<-hc.eof
	return at
}
