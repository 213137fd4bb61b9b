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
