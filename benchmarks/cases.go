package benchmarks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Cases, in table order.
const (
	CasePublish1   = "publish-1"       // one message per call, 1 goroutine
	CasePublish16  = "publish-16"      // one message per call, 16 goroutines
	CaseBatch100   = "batch-100"       // 100 messages per call, 1 goroutine
	CaseEndToEnd   = "end-to-end"      // consumer group, publish N from 16 goroutines, until all handled and acked
	CaseRouter     = "router"          // end-to-end through a Watermill Router with a no-op handler
	CaseLatency    = "latency"         // publish → handler at a low rate
	CaseDelayed    = "delayed"         // relay's delayed delivery: how late a message due at a time arrives
	CaseSparse     = "delayed-sparse"  // the same with due times far enough apart that each fires alone
	CaseTelemetry  = "end-to-end+otel" // end-to-end on relay's byte face with an OpenTelemetry SDK installed
	CasePeakRSS    = "peak-rss"        // memory backends: peak RSS of an end-to-end run in a child process
	publishWorkers = 16
)

// ThroughputCases are the cases measured in messages per second.
var ThroughputCases = []string{CasePublish1, CasePublish16, CaseBatch100, CaseEndToEnd, CaseRouter}

// AllCases lists every case in table order; [Run] runs [CaseScaling] once per
// cell of its grid.
var AllCases = append(slices.Clone(ThroughputCases), CaseTelemetry, CaseLatency, CaseDelayed, CaseSparse, CaseScaling, CasePeakRSS)

// ErrNotApplicable is returned for a case an implementation cannot run (a
// batch on the byte face, a Router on a non-Watermill face).
var ErrNotApplicable = errors.New("not applicable")

// Params sizes one run.
type Params struct {
	N        int           // messages of a throughput run
	Payload  int           // bytes per message, at least 16 for the latency case
	LatencyN int           // messages of a latency run
	Rate     int           // messages per second of a latency run
	Timeout  time.Duration // bound of one run
	// Publishers is the number of publisher goroutines of a scaling cell
	// ([CaseScaling]); the other cases use their own.
	Publishers int
}

// Result is one run of one case on one implementation.
type Result struct {
	Impl, Case string
	Msgs       int
	Elapsed    time.Duration
	// Allocs and AllocBytes are the heap allocations of the whole process
	// during the run (publisher, consumer and, for the embedded NATS server,
	// the server), per message.
	Allocs, AllocBytes float64
	P50, P99           time.Duration // latency and delayed cases
	Max                time.Duration // delayed case
	PeakRSS            int64         // peak-rss case, bytes
	// Publishers and Payload are the grid cell of a scaling result (whose
	// Case is [ScalingCell] of them): goroutines and bytes per message.
	Publishers int `json:",omitempty"`
	Payload    int `json:",omitempty"`
}

// Rate is messages per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Msgs) / r.Elapsed.Seconds()
}

var topicSeq atomic.Int64

// NewTopic returns a topic nobody used, valid on every backend and as a
// JetStream stream name.
func NewTopic(impl Impl, cas string) string {
	return fmt.Sprintf("bench-%s-%s-%s-%d-%s", impl.System, impl.Face, cas, topicSeq.Add(1), watermill.NewShortUUID()[:6])
}

// RunCase runs one case once on impl. It returns an error wrapping
// [ErrNotApplicable] for a case impl cannot run. For [CaseScaling], p.N,
// p.Payload and p.Publishers are the cell, and the result's Case is
// [ScalingCell] of it.
func RunCase(ctx context.Context, env *Env, impl Impl, cas string, p Params) (Result, error) {
	if cas == CasePeakRSS {
		return runPeakRSS(ctx, impl, p)
	}
	if cas == CaseScaling && !scales(impl) {
		return Result{}, ErrNotApplicable
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	cfg := SessionConfig{Topic: NewTopic(impl, cas)}
	switch cas {
	case CasePublish1, CasePublish16, CaseBatch100:
		cfg.Retain = p.N
	case CaseTelemetry:
		if impl.Face != FaceBytes {
			return Result{}, ErrNotApplicable
		}
		tel := newTelemetry()
		defer tel.shutdown()
		cfg.Telemetry = tel
	}
	sess, err := impl.Open(ctx, env, cfg)
	if err != nil {
		return Result{}, fmt.Errorf("%s: open: %w", impl.Name(), err)
	}
	res, err := runOpen(ctx, sess, cas, p)
	if cerr := sess.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	res.Impl, res.Case = impl.Name(), cas
	if cas == CaseScaling {
		res.Case, res.Publishers, res.Payload = ScalingCell(p.Publishers, p.Payload), p.Publishers, p.Payload
	}
	if err != nil {
		return res, fmt.Errorf("%s %s: %w", impl.Name(), cas, err)
	}
	return res, nil
}

func runOpen(ctx context.Context, sess Session, cas string, p Params) (Result, error) {
	payload := makePayload(p.Payload)
	switch cas {
	case CaseDelayed, CaseSparse:
		ds, ok := sess.(DelayedSession)
		if !ok {
			return Result{}, ErrNotApplicable
		}
		if cas == CaseSparse {
			return lateness(ctx, ds, p, sparseDelays)
		}
		return lateness(ctx, ds, p, denseDelays)
	case CasePublish1:
		return measure(p.N, func() error { return publishN(ctx, sess, payload, p.N, 1) })
	case CasePublish16:
		return measure(p.N, func() error { return publishN(ctx, sess, payload, p.N, publishWorkers) })
	case CaseBatch100:
		bp, ok := sess.(BatchPublisher)
		if !ok {
			return Result{}, ErrNotApplicable
		}
		return measure(p.N, func() error { return publishBatches(ctx, bp, payload, p.N, 100) })
	case CaseEndToEnd, CaseTelemetry:
		return EndToEnd(ctx, sess, payload, p.N, sess.Consume)
	case CaseScaling:
		return endToEnd(ctx, sess, payload, p.N, max(p.Publishers, 1), sess.Consume)
	case CaseRouter:
		ws, ok := sess.(WatermillSession)
		if !ok {
			return Result{}, ErrNotApplicable
		}
		var stop func()
		defer func() {
			if stop != nil {
				stop()
			}
		}()
		return EndToEnd(ctx, sess, payload, p.N, func(handle func([]byte)) (err error) {
			stop, err = startRouter(ctx, ws, handle)
			return err
		})
	case CaseLatency:
		return latency(ctx, sess, p)
	}
	return Result{}, fmt.Errorf("unknown case %q", cas)
}

func makePayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return p
}

// measure times f and counts the allocations made meanwhile.
func measure(n int, f func() error) (Result, error) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := f()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return Result{
		Msgs:       n,
		Elapsed:    elapsed,
		Allocs:     float64(after.Mallocs-before.Mallocs) / float64(n),
		AllocBytes: float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
	}, err
}

// publishN publishes n messages from workers goroutines, one per call.
func publishN(ctx context.Context, sess Session, payload []byte, n, workers int) error {
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := sess.Publish(ctx, payload); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// publishBatches publishes n messages size per call from one goroutine.
func publishBatches(ctx context.Context, bp BatchPublisher, payload []byte, n, size int) error {
	batch := make([][]byte, size)
	for i := range batch {
		batch[i] = payload
	}
	for sent := 0; sent < n; sent += size {
		if err := bp.PublishBatch(ctx, batch[:min(size, n-sent)]); err != nil {
			return err
		}
	}
	return nil
}

// EndToEnd starts consuming with consume, publishes n messages from 16
// goroutines, and returns once every one was handled and the server holds
// none unacknowledged.
func EndToEnd(ctx context.Context, sess Session, payload []byte, n int, consume func(func([]byte)) error) (Result, error) {
	return endToEnd(ctx, sess, payload, n, publishWorkers, consume)
}

// endToEnd is [EndToEnd] from workers publisher goroutines.
func endToEnd(ctx context.Context, sess Session, payload []byte, n, workers int, consume func(func([]byte)) error) (Result, error) {
	var handled atomic.Int64
	done := make(chan struct{})
	if err := consume(func([]byte) {
		if handled.Add(1) == int64(n) {
			close(done)
		}
	}); err != nil {
		return Result{}, fmt.Errorf("consume: %w", err)
	}
	return measure(n, func() error {
		if err := publishN(ctx, sess, payload, n, workers); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("handled %d of %d: %w", handled.Load(), n, ctx.Err())
		}
		return sess.Settled(ctx)
	})
}

// startRouter runs a Watermill Router with one no-op handler that calls
// handle. stop closes the router, which closes the session's subscriber.
func startRouter(ctx context.Context, ws WatermillSession, handle func([]byte)) (stop func(), err error) {
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	r.AddConsumerHandler("bench", ws.Topic(), ws.Subscriber(), func(msg *message.Message) error {
		handle(msg.Payload)
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx) //nolint:errcheck // its error is the handlers', seen as missing messages
	}()
	stop = func() {
		r.Close()
		<-done
	}
	select {
	case <-r.Running():
		return stop, nil
	case <-done:
		return nil, fmt.Errorf("router stopped before running")
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
}

// latency publishes p.LatencyN messages at p.Rate per second from one
// goroutine, each stamped with its send time, and records publish → handler.
func latency(ctx context.Context, sess Session, p Params) (Result, error) {
	if p.Payload < 8 {
		return Result{}, fmt.Errorf("payload %d bytes: the latency case needs at least 8", p.Payload)
	}
	base := time.Now()
	lat := make([]time.Duration, p.LatencyN)
	var handled atomic.Int64
	done := make(chan struct{})
	err := sess.Consume(func(payload []byte) {
		d := time.Since(base) - time.Duration(binary.LittleEndian.Uint64(payload))
		i := handled.Add(1)
		if i <= int64(len(lat)) {
			lat[i-1] = d
		}
		if i == int64(len(lat)) {
			close(done)
		}
	})
	if err != nil {
		return Result{}, fmt.Errorf("consume: %w", err)
	}
	interval := time.Second / time.Duration(max(p.Rate, 1))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for range p.LatencyN {
		payload := makePayload(p.Payload)
		binary.LittleEndian.PutUint64(payload, uint64(time.Since(base)))
		if err := sess.Publish(ctx, payload); err != nil {
			return Result{}, fmt.Errorf("publish: %w", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("handled %d of %d: %w", handled.Load(), p.LatencyN, ctx.Err())
	}
	slices.Sort(lat)
	return Result{Msgs: p.LatencyN, Elapsed: time.Since(start),
		P50: percentile(lat, 0.50), P99: percentile(lat, 0.99)}, nil
}

// percentile of sorted values, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Delayed-case timing: the messages are due one every step, the first lead
// after the run starts, so that every one is published before it is due and
// the system is otherwise idle. denseDelays are the delayed case's;
// sparseDelays space due times so that each fires on its own (nats-server's
// scheduler waits at least 250 ms between two runs, so denser due times fire
// together).
var (
	denseDelays  = delays{lead: 150 * time.Millisecond, step: 5 * time.Millisecond, n: 200}  // a second of due times
	sparseDelays = delays{lead: 400 * time.Millisecond, step: 400 * time.Millisecond, n: 20} // 8 s of due times
)

// delays is how the delayed cases space due times: the first lead after the
// start, then one every step, at most n in a run.
type delays struct {
	lead, step time.Duration
	n          int
}

// lateness publishes min(p.LatencyN, dl.n) messages with PublishAt, each due at its own
// time, stamped with it, and records handler time minus due time: how late
// delayed delivery is on an idle system (it must never be early).
func lateness(ctx context.Context, ds DelayedSession, p Params, dl delays) (Result, error) {
	if p.Payload < 8 {
		return Result{}, fmt.Errorf("payload %d bytes: the delayed case needs at least 8", p.Payload)
	}
	n := min(p.LatencyN, dl.n)
	base := time.Now()
	late := make([]time.Duration, n)
	var handled atomic.Int64
	var early atomic.Int64
	done := make(chan struct{})
	err := ds.Consume(func(payload []byte) {
		d := time.Since(base) - time.Duration(binary.LittleEndian.Uint64(payload))
		if d < 0 {
			early.Add(1)
		}
		i := handled.Add(1)
		if i <= int64(len(late)) {
			late[i-1] = d
		}
		if i == int64(len(late)) {
			close(done)
		}
	})
	if err != nil {
		return Result{}, fmt.Errorf("consume: %w", err)
	}
	start := time.Now()
	for i := range n {
		due := dl.lead + time.Duration(i)*dl.step
		payload := makePayload(p.Payload)
		binary.LittleEndian.PutUint64(payload, uint64(due))
		if err := ds.PublishAt(ctx, payload, base.Add(due)); err != nil {
			return Result{}, fmt.Errorf("publish at: %w", err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("handled %d of %d: %w", handled.Load(), n, ctx.Err())
	}
	if e := early.Load(); e > 0 {
		return Result{}, fmt.Errorf("%d of %d delayed messages delivered before they were due", e, n)
	}
	slices.Sort(late)
	return Result{Msgs: n, Elapsed: time.Since(start),
		P50: percentile(late, 0.50), P99: percentile(late, 0.99), Max: late[len(late)-1]}, nil
}
