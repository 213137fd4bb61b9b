// What a Redis Cluster needs of the engine beyond what a redis.ClusterClient
// does by itself.

package redisstreams

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// failedOn tells a cluster client that a command failed, so that it reloads
// its map of slots to masters now. go-redis v9.23 reloads the map after a
// MOVED or ASK reply and otherwise only every ClusterStateReloadInterval (60
// s by default): after a master dies, the replica that took over never sends
// MOVED to a client that keeps dialling the dead address, and every command
// on that master's slots would fail for up to a minute. The reload is lazy
// and coalesced by go-redis (one at a time, 200 ms apart), so calling this on
// every failure costs one CLUSTER SLOTS at most every 200 ms. Other clients,
// redis.Nil and a caller's cancellation are ignored.
func (e *engine) failedOn(err error) {
	c, ok := e.client.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, redis.Nil) ||
		errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) {
		return
	}
	c.ReloadState(context.Background())
}

// readerFor returns the client of the next XREADGROUP: the subscription's
// own, or e.client for clients other than *redis.Client and
// *redis.ClusterClient. On a cluster it makes the own client, when there is
// none, from the node client of the master of the stream's slot, so that no
// blocking read holds a connection of the cluster client's pool (with more
// subscriptions than PoolSize, reads would starve every other command). It
// returns nil once stopping began.
func (s *subscription) readerFor() (redis.UniversalClient, error) {
	s.readerMu.Lock()
	defer s.readerMu.Unlock()
	if s.ctx.Err() != nil {
		return nil, s.ctx.Err()
	}
	c, ok := s.e.client.(*redis.ClusterClient)
	if !ok || s.own != nil {
		return s.reader, nil
	}
	m, err := c.MasterForKey(s.ctx, s.stream)
	if err != nil {
		return nil, err
	}
	s.own = newReader(m, s.e.cfg.readerHooks)
	s.reader = s.own
	return s.reader, nil
}

// readFailedOn drops the own reader of a cluster subscription after a
// failed read, so that the next read asks for the slot's master again.
func (s *subscription) readFailedOn() {
	if _, ok := s.e.client.(*redis.ClusterClient); !ok {
		return
	}
	s.readerMu.Lock()
	defer s.readerMu.Unlock()
	s.closeReaderLocked()
}

// closeReaderLocked closes the own reader, if any. The caller holds
// readerMu.
func (s *subscription) closeReaderLocked() {
	if s.own == nil {
		return
	}
	if err := s.own.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		s.log.Debug("redisstreams: close reader", "error", err)
	}
	if _, ok := s.e.client.(*redis.ClusterClient); ok {
		s.own, s.reader = nil, nil
	}
}
