// The read loop of a subscription: new entries from XREADGROUP, held and
// queued for the workers.

package redisstreams

import (
	"context"
	"errors"
	"runtime"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
)

// readMax is the largest COUNT of one XREADGROUP.
const readMax = 500

// newReader returns a client for the blocking reads of one subscription:
// c's options (address, credentials, TLS, database, dialer, timeouts) with a
// pool of one connection and no client-side cache. c's hooks do not apply.
func newReader(c *redis.Client, hooks []redis.Hook) *redis.Client {
	o := *c.Options()
	// go-redis writes the client's maintenance-notification config while it
	// sets up its first connections, so reading it here races; a blocking
	// reader needs no such notifications anyway.
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 1, 1
	o.MaxConcurrentDials = 1
	o.PipelinePoolSize = -1
	o.AutoPipelineOptions = nil
	o.ClientSideCacheConfig, o.ClientSideCache = nil, nil
	r := redis.NewClient(&o)
	for _, h := range hooks {
		r.AddHook(h)
	}
	return r
}

// readLoop reads new entries until stopping, as many per read as the quota
// allows once a quarter of it is free (fewer, larger reads while the workers
// are the bottleneck). A failed read is retried after a growing pause; a
// group that vanished (a Redis restart without persistence) is created again,
// at "0" (see [engine.ensureGroup]).
func (s *subscription) readLoop() {
	least := max(1, (s.e.cfg.concurrency+s.e.cfg.prefetch)/4)
	failures := 0
	for {
		// The read does not take the quota while it blocks: a claim or a
		// retry that is due meanwhile must not wait for it.
		n := s.quota.await(s.ctx, least, readMax)
		if n == 0 {
			return
		}
		reader, err := s.readerFor()
		var streams []redis.XStream
		if err == nil {
			streams, err = reader.XReadGroup(s.ctx, &redis.XReadGroupArgs{
				Group:    s.e.cfg.group,
				Consumer: s.consumer,
				Streams:  []string{s.stream, ">"},
				Count:    int64(n),
				Block:    s.e.cfg.blockTimeout,
			}).Result()
		}
		var msgs []redis.XMessage
		if err == nil && len(streams) > 0 {
			msgs = streams[0].Messages
		}
		s.quota.force(len(msgs))
		switch {
		case errors.Is(err, redis.Nil): // block timeout, nothing new
			failures = 0
			continue
		case err != nil:
			if s.ctx.Err() != nil {
				return
			}
			failures++
			s.readFailed(err, failures)
			continue
		}
		failures = 0
		s.hold(msgs)
		for _, m := range msgs {
			s.enqueue(m, 1)
		}
		// Let a woken worker run on this P now, rather than after the
		// next read is sent or once another P steals it: a few tens of µs
		// of publish → handler latency at low rates.
		runtime.Gosched()
	}
}

func (s *subscription) readFailed(err error, failures int) {
	s.e.failedOn(err)
	s.readFailedOn()
	delay := retryDelay(failures)
	s.log.Warn("redisstreams: read failed; retrying", "error", err, "failures", failures, "retry_in", delay)
	if !lifecycle.Sleep(s.ctx, delay) {
		return
	}
	if redis.HasErrorPrefix(err, "NOGROUP") {
		ctx, cancel := context.WithTimeout(s.ctx, setupTimeout)
		defer cancel()
		if err := s.e.ensureGroup(ctx, s.stream); err != nil {
			s.log.Warn("redisstreams: recreate group failed", "error", err)
		} else {
			s.log.Info("redisstreams: group recreated")
		}
	}
}

// hold marks entries as held, so that the idle refresh covers them and the
// claim loop leaves them alone, and counts them in relay.messages.held.
func (s *subscription) hold(msgs []redis.XMessage) {
	if len(msgs) == 0 {
		return
	}
	s.mu.Lock()
	for _, m := range msgs {
		s.held[m.ID] = struct{}{}
	}
	s.mu.Unlock()
	s.tel.Hold(int64(len(msgs)))
}

// enqueue queues held entry m, delivered for the attempt-th time, for the
// workers. The caller has taken its quota, so the queue has room.
func (s *subscription) enqueue(m redis.XMessage, attempt int) {
	if len(m.Values) == 0 {
		// Redis before 7 returns a pending entry that was trimmed from the
		// stream with no fields: nothing is left to deliver.
		s.log.Warn("redisstreams: pending entry was deleted from the stream; acking it", "id", m.ID)
		s.tel.Hold(-1) // settled here: no worker sees it
		s.acks <- m.ID
		return
	}
	s.queue <- &entry{s: s, values: m.Values, d: delivery.Delivery{Topic: s.topic, ID: m.ID, Attempt: attempt}}
}

// deliverHeld takes quota for each of the held entries msgs, one at a time,
// and queues them. It returns false when stopping; the entries not queued
// then stay pending.
func (s *subscription) deliverHeld(msgs []redis.XMessage, attempt func(m redis.XMessage) int) bool {
	for i, m := range msgs {
		if s.quota.take(s.ctx, 1, 1) == 0 {
			s.mu.Lock()
			for _, m := range msgs[i:] {
				delete(s.held, m.ID)
			}
			s.mu.Unlock()
			s.tel.Hold(-int64(len(msgs) - i))
			return false
		}
		s.enqueue(m, attempt(m))
	}
	return true
}
