// Writes that wait for replicas: WithReplicaAcks.

package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bounds of [WithReplicaAcks]: the longest timeout, and the most replicas
// to wait for (WAIT accepts any number, but one above the replicas a master
// has only times out).
const (
	MaxReplicaAckTimeout = time.Minute
	MaxReplicaAcks       = 64
)

// ErrNotReplicated is returned (wrapped) by Publish and by
// [Inspector.Redrive], and reported by a dead-letter write, when fewer replicas than [WithReplicaAcks] asks
// acknowledged the write within its timeout. The entry was added on the
// master and may be delivered; it may also be lost if that master fails
// before a replica gets it. Publishing again is safe under at-least-once
// delivery (the message may then be delivered twice).
var ErrNotReplicated = errors.New("redisstreams: too few replicas acknowledged the write")

// WithReplicaAcks makes Publish, and the write of a dead letter, wait until
// at least n replicas of the master that took the write have acknowledged it,
// at most timeout, with Redis' WAIT command: WAIT n <timeout in ms> is sent on
// the connection of the XADDs, after them, in the same pipeline, so one WAIT
// covers every message that the publisher coalesced into that pipeline (on a
// Redis Cluster, one pipeline and one WAIT per master involved). When fewer
// than n acknowledged in time, Publish returns an error wrapping
// [ErrNotReplicated], and a dead-letter write counts as failed (the source
// entry stays pending and is delivered again).
//
// What it guarantees is what WAIT guarantees. The Redis documentation of
// WAIT (redis.io/commands/wait, as of Redis 7.0) says that WAIT "does not
// make Redis a strongly consistent store", and that "in the context of
// Sentinel or Redis Cluster failover, WAIT improves the real world data
// safety": an acknowledged write is in the memory of n replicas, so a
// failover that promotes one of them keeps it. WAIT narrows the window in
// which an acknowledged write can be lost; it is not a consensus write. A
// failover can still promote a replica that had not acknowledged, and a
// replica restarted without persistence forgets what it acknowledged.
//
// Given to [NewInspector], it covers [Inspector.Redrive] the same way: the
// XADD of the redriven message is followed by WAIT on the connection of the
// destination's master, and the dead letter is deleted only once n replicas
// acknowledged; when fewer did, Redrive returns an error wrapping
// [ErrNotReplicated] and keeps the dead letter (redriving it again may
// deliver the message twice).
//
// Delayed messages are covered too ([Broker.PublishAt], and Watermill's
// delayed metadata): the ZADD that stores one in its topic's sorted set is
// followed by a WAIT in the same pipeline, and PublishAt returns an error
// wrapping [ErrNotReplicated] as Publish does. Each run of the mover's
// script (which moves up to 1,000 due entries into the stream) that moved
// entries is followed by one WAIT on its connection (a run that moved nothing
// sends none); a run that too few replicas acknowledged is logged as a
// warning and not repeated, and it cannot lose the entries: Redis replicates
// the script as one transaction, so a replica that missed it still holds
// them in the sorted set and moves them again if it is promoted (a
// duplicate, not a loss). A run of the script, bounded at 1 s without WAIT,
// may then take up to 1 s plus timeout, and Close waits for one in flight.
//
// n must be from 1 to [MaxReplicaAcks] (64) and timeout between 1 ms and
// [MaxReplicaAckTimeout] (1 minute);
// WAIT's own 0 (wait for ever) is refused, since Publish would then hang
// while a replica is down. The timeout must be below the client's
// ReadTimeout (go-redis' default is 3 s), or the read of WAIT's answer times
// out first. Zero replicas (the default) sends no WAIT: Publish returns once
// the master answered XADD. It works on a *redis.Client (a single master, or
// Sentinel's failover client) and a *redis.ClusterClient; the constructor
// refuses it, with [relay.ErrInvalidOption], on other clients (a
// *redis.Ring), whose pipelines do not keep one connection per master.
func WithReplicaAcks(n int, timeout time.Duration) Option {
	return func(c *config) error {
		if n < 1 || n > MaxReplicaAcks {
			return invalid("replica acks %d, must be from 1 to %d", n, MaxReplicaAcks)
		}
		if timeout < time.Millisecond || timeout > MaxReplicaAckTimeout {
			return invalid("replica ack timeout %s, must be between 1ms and %s", timeout, MaxReplicaAckTimeout)
		}
		c.replicaAcks, c.replicaTimeout = n, timeout
		return nil
	}
}

// checkReplicaClient refuses WithReplicaAcks on a client whose pipelines do
// not keep the writes and the WAIT of one master on one connection.
func checkReplicaClient(c redis.UniversalClient, cfg config) error {
	if cfg.replicaAcks == 0 {
		return nil
	}
	switch c.(type) {
	case *redis.Client, *redis.ClusterClient:
		return nil
	}
	return invalid("WithReplicaAcks needs a *redis.Client or *redis.ClusterClient, got %T", c)
}

// sendReplicated sends args with a WAIT after them, one pipeline per master,
// and returns the error of each XADD: its own, or that of its pipeline's
// WAIT. Pipelines to different masters run at once.
func (e *engine) sendReplicated(ctx context.Context, args []redis.XAddArgs) []error {
	errs := make([]error, len(args))
	groups := map[*redis.Client][]int{}
	switch c := e.client.(type) {
	case *redis.ClusterClient:
		for i := range args {
			m, err := c.MasterForKey(ctx, args[i].Stream)
			if err != nil {
				errs[i] = err
				continue
			}
			groups[m] = append(groups[m], i)
		}
	case *redis.Client:
		groups[c] = make([]int, len(args))
		for i := range args {
			groups[c][i] = i
		}
	}
	var wg sync.WaitGroup
	for m, idx := range groups {
		wg.Go(func() { e.waitGroup(ctx, m, args, idx, errs) })
	}
	wg.Wait()
	for _, err := range errs {
		e.failedOn(err)
	}
	return errs
}

// waitGroup sends the XADDs args[idx] to master m, then WAIT, in one
// pipeline, and sets errs[idx].
func (e *engine) waitGroup(ctx context.Context, m *redis.Client, args []redis.XAddArgs, idx []int, errs []error) {
	adds := make([]*redis.StringCmd, len(idx))
	waitErr := e.pipeWait(ctx, m, func(p redis.Pipeliner) {
		for j, i := range idx {
			adds[j] = p.XAdd(ctx, &args[i])
		}
	})
	for j, i := range idx {
		if aerr := adds[j].Err(); aerr != nil {
			errs[i] = aerr
		} else {
			errs[i] = waitErr
		}
	}
}

// pipeWait sends the writes queue puts on a pipeline of c, then WAIT, in
// that one pipeline, so that WAIT runs on the connection of the writes and
// covers all of them. It returns WAIT's error (see waitErr), or the
// pipeline's when WAIT got no answer. The writes' own errors are in their
// commands.
func (e *engine) pipeWait(ctx context.Context, c redis.Cmdable, queue func(p redis.Pipeliner)) error {
	var wait *redis.Cmd
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		queue(p)
		wait = p.Do(ctx, "WAIT", e.cfg.replicaAcks, e.cfg.replicaTimeout.Milliseconds())
		return nil
	})
	if err != nil && wait.Err() != nil {
		return err
	}
	return e.waitErr(wait)
}

// waitErr returns the error of a WAIT's answer: its own, one wrapping
// [ErrNotReplicated] when fewer replicas than asked acknowledged in time,
// nil otherwise.
func (e *engine) waitErr(wait *redis.Cmd) error {
	got, err := wait.Int64()
	switch {
	case err != nil:
		return err
	case got < int64(e.cfg.replicaAcks):
		return fmt.Errorf("%w: WAIT %d %d answered %d", ErrNotReplicated,
			e.cfg.replicaAcks, e.cfg.replicaTimeout.Milliseconds(), got)
	}
	return nil
}

// masterFor returns the client of the master that serves key, bounded by
// ctx's deadline as [engine.bounded] bounds: the node client of its slot's
// master on a cluster, the client itself on a *redis.Client
// (checkReplicaClient admits no other kind when WAIT is on).
func (e *engine) masterFor(ctx context.Context, key string) (*redis.Client, error) {
	var m *redis.Client
	switch c := e.client.(type) {
	case *redis.ClusterClient:
		var err error
		if m, err = c.MasterForKey(ctx, key); err != nil {
			return nil, err
		}
	case *redis.Client:
		m = c
	default:
		return nil, fmt.Errorf("WithReplicaAcks on a %T", e.client)
	}
	if bc, ok := boundedClient(ctx, m).(*redis.Client); ok {
		return bc, nil
	}
	return m, nil
}

// firstErr returns the first non-nil error of errs.
func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
