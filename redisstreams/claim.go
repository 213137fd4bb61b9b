// The claim loop of a subscription: entries of silent consumers, the
// removal of idle consumers, and the hand back at stop.

package redisstreams

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// claimLoop claims the entries of silent consumers every half claim timeout,
// and removes idle consumers without pending entries now and then.
func (s *subscription) claimLoop() {
	t := time.NewTicker(s.e.cfg.claimTimeout / 2)
	defer t.Stop()
	cleanEvery := s.e.idleConsumerTimeout() / 2
	lastClean := time.Time{} // first clean-up at the first tick
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if !s.claim(s.e.cfg.claimTimeout, "") {
			return
		}
		if time.Since(lastClean) >= cleanEvery {
			s.removeIdleConsumers()
			lastClean = time.Now()
		}
	}
}

// claim takes over the entries pending for at least minIdle (on owner, or on
// any consumer when owner is empty) that this subscription is not dealing
// with already, and delivers them. It returns false when stopping.
func (s *subscription) claim(minIdle time.Duration, owner string) bool {
	start := "-"
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, upkeepTimeout)
		pending, err := s.e.bounded(ctx).XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s.stream,
			Group: s.e.cfg.group, Idle: minIdle, Start: start, End: "+", Count: claimPage, Consumer: owner}).Result()
		var msgs []redis.XMessage
		counts := make(map[string]int64, len(pending))
		if err == nil {
			ids := make([]string, 0, len(pending))
			for _, p := range pending {
				if p.Consumer == s.consumer && s.isLocal(p.ID) {
					continue
				}
				ids = append(ids, p.ID)
				counts[p.ID] = p.RetryCount
			}
			if len(ids) > 0 {
				msgs, err = s.e.bounded(ctx).XClaim(ctx, &redis.XClaimArgs{Stream: s.stream, Group: s.e.cfg.group,
					Consumer: s.consumer, MinIdle: minIdle, Messages: ids}).Result()
			}
		}
		cancel()
		if err != nil {
			s.e.failedOn(err)
			if s.ctx.Err() == nil {
				s.log.Warn("redisstreams: claim failed", "error", err)
			}
			return s.ctx.Err() == nil
		}
		if len(msgs) > 0 {
			s.log.Info("redisstreams: claimed pending entries", "entries", len(msgs), "min_idle", minIdle)
		}
		s.hold(msgs)
		// The claim incremented the counter read before it.
		if !s.deliverHeld(msgs, func(m redis.XMessage) int { return int(counts[m.ID]) + 1 }) {
			return false
		}
		if len(pending) < claimPage {
			return true
		}
		start = "(" + pending[len(pending)-1].ID
	}
	return false
}

// isLocal reports whether this subscription deals with id already.
func (s *subscription) isLocal(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, held := s.held[id]
	_, waiting := s.waiting[id]
	return held || waiting
}

// handBack returns the entries still queued at stop, which no handler saw,
// to the group: XCLAIM to itself with the delivery counter as it was before
// this subscription's read or claim, and an idle time of the claim timeout,
// so that the next consumer to look claims them at once and counts no
// delivery that did not happen.
func (s *subscription) handBack() {
	byCount := make(map[int][]string)
	n := 0
	for done := false; !done; {
		select {
		case en := <-s.queue:
			byCount[en.d.Attempt-1] = append(byCount[en.d.Attempt-1], en.d.ID)
			n++
		default:
			done = true
		}
	}
	if n == 0 {
		return
	}
	s.tel.Hold(-int64(n))
	defer s.quota.give(n)
	// No idle refresh may undo the idle time set here.
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.Lock()
	for _, ids := range byCount {
		for _, id := range ids {
			delete(s.held, id)
		}
	}
	s.mu.Unlock()
	ctx := s.stopCtx
	_, err := s.e.bounded(ctx).Pipelined(ctx, func(p redis.Pipeliner) error {
		for count, ids := range byCount {
			args := []any{"XCLAIM", s.stream, s.e.cfg.group, s.consumer, 0}
			for _, id := range ids {
				args = append(args, id)
			}
			args = append(args, "IDLE", s.e.cfg.claimTimeout.Milliseconds(), "RETRYCOUNT", count, "JUSTID")
			p.Do(ctx, args...)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("redisstreams: hand back of unhandled entries failed; they stay pending until claimed",
			"entries", n, "error", err)
	}
}

// deleteConsumerScript deletes consumer ARGV[2] of group ARGV[1] on stream
// KEYS[1] if it has no pending entry and has been idle for at least ARGV[3]
// milliseconds. Check and delete are one atomic step, so an entry the
// consumer reads in between cannot be dropped with it. It returns 1 when it
// deleted the consumer.
var deleteConsumerScript = redis.NewScript(`
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
`)

// deleteConsumer removes consumer from the group, within ctx's deadline, if
// it has no pending entry and has been idle for at least idle.
func (s *subscription) deleteConsumer(ctx context.Context, consumer string, idle time.Duration) bool {
	n, err := deleteConsumerScript.Run(ctx, s.e.bounded(ctx), []string{s.stream},
		s.e.cfg.group, consumer, idle.Milliseconds()).Int()
	if err != nil {
		if !errors.Is(err, context.Canceled) { // stopping
			s.log.Warn("redisstreams: delete consumer failed", "deleted_consumer", consumer, "error", err)
		}
		return false
	}
	return n == 1
}

// removeIdleConsumers removes the group's consumers that have no pending
// entry and have been idle for the idle-consumer timeout (consumers of
// processes that stopped without cleaning up).
func (s *subscription) removeIdleConsumers() {
	timeout := s.e.idleConsumerTimeout()
	ctx, cancel := context.WithTimeout(s.ctx, upkeepTimeout)
	defer cancel()
	infos, err := s.e.bounded(ctx).XInfoConsumers(ctx, s.stream, s.e.cfg.group).Result()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("redisstreams: list consumers failed", "error", err)
		}
		return
	}
	for _, c := range infos {
		if c.Name == s.consumer || c.Pending > 0 || c.Idle < timeout {
			continue
		}
		if s.deleteConsumer(ctx, c.Name, timeout) {
			s.log.Info("redisstreams: removed idle consumer", "removed_consumer", c.Name, "idle", c.Idle)
		}
	}
}
