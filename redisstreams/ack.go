// The acker of a subscription: batched XACKs, sent again while Redis does
// not answer.

package redisstreams

import (
	"context"
	"time"
)

// ackLoop sends one XACK for every ack queued while the previous one was in
// flight: with many handlers finishing together, one round trip instead of
// one each. The ids of a failed XACK are kept (still held) and sent again,
// with the acks queued meanwhile, after a pause that grows from
// [readRetryMin] to [readRetryMax] while Redis does not answer. After the
// workers are done it acks what is left, once, and returns.
func (s *subscription) ackLoop() {
	var failed []string // still held; bounded by the quota
	var retry <-chan time.Time
	failures := 0
	for {
		var ids []string
		select {
		case id := <-s.acks:
			if len(failed) > 0 {
				failed = append(failed, id) // sent with the retry
				continue
			}
			ids = append(make([]string, 0, 16), id)
		case <-retry:
			ids, failed, retry = failed, nil, nil
		case <-s.tailStop:
			s.finalAcks(failed)
			return
		}
	drain:
		for len(ids) < ackBatchMax {
			select {
			case id := <-s.acks:
				ids = append(ids, id)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		err := s.sendAcks(ctx, ids)
		cancel()
		if err != nil {
			s.e.failedOn(err)
			failures++
			failed = ids
			delay := retryDelay(failures)
			s.log.Debug("redisstreams: ack failed; retrying", "entries", len(ids), "failures", failures,
				"retry_in", delay, "error", err)
			retry = time.After(delay)
			continue
		}
		failures = 0
	}
}

// finalAcks sends failed and the acks still queued at stop, in one try each
// within what is left of the stop's time ([stopTimeout]); what fails, or is
// not sent in time, stays pending.
func (s *subscription) finalAcks(failed []string) {
	ids := failed
	for {
		for len(ids) < ackBatchMax {
			select {
			case id := <-s.acks:
				ids = append(ids, id)
				continue
			default:
			}
			break
		}
		if len(ids) == 0 {
			return
		}
		err := s.stopCtx.Err()
		if err == nil {
			err = s.sendAcks(s.stopCtx, ids)
		}
		if err != nil {
			s.stopFailed = true
			s.log.Warn("redisstreams: ack failed at stop; the entries stay pending and will be delivered again",
				"entries", len(ids), "error", err)
			s.release(ids)
		}
		ids = nil
	}
}

// sendAcks acknowledges ids, within ctx's deadline, and releases them. On
// failure it returns the error and keeps them held.
func (s *subscription) sendAcks(ctx context.Context, ids []string) error {
	err := s.e.bounded(ctx).XAck(ctx, s.stream, s.e.cfg.group, ids...).Err()
	if err != nil {
		return err
	}
	s.release(ids)
	return nil
}

// release stops holding ids and gives back their quota.
func (s *subscription) release(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.held, id)
	}
	s.mu.Unlock()
	s.quota.give(len(ids))
}
