// The refresh loop of a subscription: the idle time of the held entries
// reset, so that no one claims them.

package redisstreams

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// refreshLoop resets the idle time of the held entries every third of the
// claim timeout, until the handlers are done.
func (s *subscription) refreshLoop() {
	t := time.NewTicker(s.e.cfg.claimTimeout / 3)
	defer t.Stop()
	for {
		select {
		case <-s.tailStop:
			return
		case <-t.C:
		}
		s.refresh()
	}
}

func (s *subscription) refresh() {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.Lock()
	ids := make([]string, 0, len(s.held))
	for id := range s.held {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), min(max(s.e.cfg.claimTimeout/3, 100*time.Millisecond), ackTimeout))
	defer cancel()
	for len(ids) > 0 {
		n := min(len(ids), refreshBatchMax)
		err := s.e.bounded(ctx).XClaimJustID(ctx, &redis.XClaimArgs{Stream: s.stream, Group: s.e.cfg.group,
			Consumer: s.consumer, MinIdle: 0, Messages: ids[:n]}).Err()
		if err != nil {
			s.log.Warn("redisstreams: idle refresh failed", "entries", len(ids), "error", err)
			return
		}
		ids = ids[n:]
	}
}
