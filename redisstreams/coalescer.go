// The publish coalescer: the writer goroutine that sends concurrent
// publish calls in one pipeline.

package redisstreams

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
)

const (
	// writerQueue bounds the publish calls waiting for the writer: more
	// wait to enqueue (back-pressure).
	writerQueue = 1024
	// pipelineMax is the number of XADDs after which the writer stops
	// adding calls to a pipeline. A call is never split.
	pipelineMax = 512
)

// pubRequest is one publish call that waits for the writer.
type pubRequest struct {
	ctx  context.Context
	args []redis.XAddArgs
	one  [1]redis.XAddArgs // args of a single message, without another allocation
	done chan error        // buffered: the writer never blocks on it
}

// writer coalesces concurrent publish calls: it takes every call that queued
// up while its previous pipeline was in flight and sends them in one
// pipeline, so N concurrent publishers pay about one round trip instead of
// N. Each caller waits for its own answer or its ctx. It runs from the first
// concurrent publish until Close, which waits for it; calls still queued then
// fail with relay.ErrClosed.
type writer struct {
	e      *engine
	queue  chan *pubRequest
	stop   chan struct{} // closed by shutdown
	exited chan struct{} // closed when run returns
}

// startWriter returns the writer, started on first use, or nil after Close.
func (e *engine) startWriter() *writer {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs.Closed() {
		return nil // Shutdown reads e.w under e.mu after closing: it sees every writer started
	}
	if e.w == nil {
		e.w = &writer{e: e, queue: make(chan *pubRequest, writerQueue),
			stop: make(chan struct{}), exited: make(chan struct{})}
		go e.w.run()
	}
	return e.w
}

// enqueue hands r to the writer and waits for its answer, ctx, or the end of
// the writer.
func (e *engine) enqueue(r *pubRequest) error {
	w := e.startWriter()
	if w == nil {
		return relay.ErrClosed
	}
	r.done = make(chan error, 1)
	select {
	case w.queue <- r:
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-w.exited:
		return relay.ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-r.ctx.Done():
		return r.ctx.Err() // the writer skips r or sends it regardless
	case <-w.exited:
		select {
		case err := <-r.done:
			return err
		default:
			return relay.ErrClosed // queued after the writer's last drain
		}
	}
}

func (w *writer) run() {
	defer close(w.exited)
	batch := make([]*pubRequest, 0, 64)
	args := make([]redis.XAddArgs, 0, pipelineMax)
	for {
		select {
		case r := <-w.queue:
			batch = append(batch[:0], r)
		case <-w.stop:
			for {
				select {
				case r := <-w.queue:
					r.done <- relay.ErrClosed
				default:
					return
				}
			}
		}
		n := len(batch[0].args)
	fill:
		for n < pipelineMax {
			select {
			case r := <-w.queue:
				batch = append(batch, r)
				n += len(r.args)
			default:
				break fill
			}
		}
		args = w.flush(batch, args[:0])
		clear(batch) // drop the payloads
	}
}

// flush sends the calls of batch whose ctx is not done, in one round trip,
// and answers every call.
func (w *writer) flush(batch []*pubRequest, args []redis.XAddArgs) []redis.XAddArgs {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err // its caller has returned: nothing is sent for it
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
		return args
	case 1:
		// Its own ctx: a deadline bounds the round trip.
		live[0].done <- w.e.send(live[0].ctx, live[0].args)
		return args
	}
	for _, r := range live {
		args = append(args, r.args...)
	}
	// Several callers' ctx: none of them may cut the others' round trip
	// short; the client's timeouts bound it.
	ctx := context.Background()
	if w.e.cfg.replicaAcks > 0 {
		errs := w.e.sendReplicated(ctx, args)
		i := 0
		for _, r := range live {
			r.done <- firstErr(errs[i : i+len(r.args)])
			i += len(r.args)
		}
		clear(args)
		return args
	}
	cmds, err := w.e.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range args {
			p.XAdd(ctx, &args[i])
		}
		return nil
	})
	w.e.failedOn(err)
	i := 0
	for _, r := range live {
		rerr := err
		if len(cmds) == len(args) {
			rerr = nil
			for _, c := range cmds[i : i+len(r.args)] {
				if cerr := c.Err(); cerr != nil {
					rerr = cerr
					break
				}
			}
		}
		i += len(r.args)
		r.done <- rerr
	}
	clear(args) // drop the payloads
	return args
}
