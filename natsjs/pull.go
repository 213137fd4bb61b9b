// This file speaks JetStream's pull protocol itself (a request on
// $JS.API.CONSUMER.MSG.NEXT and the status messages that answer it) rather
// than calling the jetstream package's Fetch: Fetch drops the messages of a
// pull request whose context is canceled, which would leave them leased until
// the ack wait on every Close. See fetch.

package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// pullRequest is the body of a JetStream pull request.
type pullRequest struct {
	Batch   int           `json:"batch"`
	Expires time.Duration `json:"expires,omitempty"`
}

// fetch runs one pull request for at most n messages and queues what it
// brings as it arrives. An expired pull request (no message, or no server to
// answer while disconnected) is not an error; a request that a connected
// server did not end is errNoEnd.
//
// It does not use the jetstream package's Fetch, which, when its context is
// canceled, drops the messages the server already sent for the request: they
// would stay leased until the ack wait. Instead, once ctx is done, fetch
// drains the request's subscription: the server stops sending, and every
// message it sent before is received, queued, and (the subscription
// stopping) returned to JetStream at once.
func (s *subscription) fetch(ctx context.Context, n int) error {
	info := s.cons.CachedInfo()
	// Limits set by WithConsumerConfig: a request beyond them is refused
	// (409) every time.
	if most := info.Config.MaxRequestBatch; most > 0 {
		n = min(n, most)
	}
	expires := fetchWait
	if most := info.Config.MaxRequestExpires; most > 0 {
		expires = min(expires, most)
	}
	nc := s.e.js.Conn()
	sub, err := subscribeRequest(nc, n)
	if err != nil {
		return err
	}
	body, err := json.Marshal(pullRequest{Batch: n, Expires: expires})
	if err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	if err := nc.PublishRequest(s.e.nextSubject(info.Stream, info.Name), sub.Subject, body); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	// The server ends the request after expires; a request that got no end
	// by then went to a server that is gone.
	wctx, cancel := context.WithTimeout(ctx, expires+time.Second)
	defer cancel()
	for got := 0; got < n; {
		var msg *nats.Msg
		select {
		case msg = <-sub.msgs:
		case <-wctx.Done():
			if ctx.Err() != nil {
				s.finish(sub, n-got)
				return nil
			}
			_ = sub.Unsubscribe()
			if !nc.IsConnected() {
				return nil // its server is gone: sent again once back
			}
			// Connected, and no end: no consumer took the request. With
			// the consumer gone the server answers 503 (no responders)
			// only while no other client has interest in the subject; a
			// client that listens on it (a monitoring tap on $JS.API.>)
			// turns that into silence, and so does an end that was lost.
			// Treated as a success, the loop would send every request to
			// no one, for ever: the consumer is set up again instead.
			return errNoEnd
		}
		end, err := pullStatus(msg)
		if err != nil || end {
			_ = sub.Unsubscribe()
			return err
		}
		if isStatus(msg) {
			continue
		}
		s.hold(msg)
		s.queue <- msg // never blocks: at most capacity are held
		got++
	}
	_ = sub.Unsubscribe()
	return nil
}

// errNoEnd is fetch's error when a connected server did not end a pull
// request within its expiry and a second.
var errNoEnd = errors.New("pull request got no end from the server")

// finish ends the pull request of sub, which may still bring left
// messages, when the subscription stops.
//
// Ending the interest at once (drain) left messages leased until the ack
// wait on nats-server 2.9.10, dozens per Close under load: the server had
// picked them for the request, which then had no interest. And a request
// that is still waiting when the client has gone costs a redelivery on
// servers before v2.10.14: when a Nak'd message finds only such a request,
// the server drops it from its redelivery queue, and it too waits for the ack
// wait. So when the consumer has messages to deliver, finish first lets the
// server complete the request (its batch filled, or its end status), for at
// most finishWait, and only then drains. What arrives meanwhile is held, and
// queued only once the request is over, so that its Nak cannot be delivered
// again into this same request.
func (s *subscription) finish(sub *request, left int) {
	var late []*nats.Msg
	if s.mayDeliver() {
		timer := time.NewTimer(finishWait)
		defer timer.Stop()
	wait:
		for len(late) < left {
			var msg *nats.Msg
			select {
			case msg = <-sub.msgs:
			case <-timer.C:
				break wait
			}
			if end, _ := pullStatus(msg); end {
				break
			}
			if isStatus(msg) {
				continue
			}
			s.hold(msg)
			late = append(late, msg)
		}
	}
	s.drain(sub)
	for _, msg := range late {
		s.queue <- msg // never blocks: at most capacity are held
	}
}

// mayDeliver reports whether the consumer has messages it has not delivered
// yet, so that a pull request in progress may still get some; an idle
// consumer's request is ended at once, and so is one on a server that does
// not answer within finishWait (nothing to wait for there).
func (s *subscription) mayDeliver() bool {
	ctx, cancel := context.WithTimeout(context.Background(), finishWait)
	defer cancel()
	info, err := s.cons.Info(ctx)
	return err == nil && info.NumPending > 0
}

// drain ends the pull request of sub when the subscription stops: the
// server stops sending (no interest), and the messages it sent before are
// received and queued, to be returned to JetStream.
func (s *subscription) drain(sub *request) {
	closed := sub.StatusChanged(nats.SubscriptionClosed) // closed once the subscription is gone
	if err := sub.Drain(); err != nil {
		_ = sub.Unsubscribe()
		s.queueReceived(sub)
		return
	}
	timer := time.NewTimer(flushTimeout)
	defer timer.Stop()
	for {
		select {
		case msg := <-sub.msgs:
			s.queueStored(msg)
		case <-closed:
			// Drained: the server has stopped sending, and what it sent
			// before is in sub.msgs.
			s.queueReceived(sub)
			return
		case <-timer.C:
			_ = sub.Unsubscribe() // given up
			s.queueReceived(sub)
			return
		}
	}
}

// queueReceived queues the stored messages that sub has received and not
// yet given, once it is unsubscribed (nothing more arrives then).
func (s *subscription) queueReceived(sub *request) {
	for {
		select {
		case msg := <-sub.msgs:
			s.queueStored(msg)
		default:
			return
		}
	}
}

// queueStored holds and queues msg unless it is a status message.
func (s *subscription) queueStored(msg *nats.Msg) {
	if isStatus(msg) {
		return
	}
	s.hold(msg)
	s.queue <- msg // never blocks: at most capacity are held
}

// request is the subscription to the reply subject of one pull request, with
// the channel that receives its messages.
type request struct {
	*nats.Subscription
	msgs chan *nats.Msg
}

// subscribeRequest subscribes to a new inbox for a pull request of at most
// n messages. Its channel has room for all of them and for the status
// messages that may come with them (an end, flow control), so the client
// never drops one as a slow consumer. It is not a SubscribeSync, whose
// channel, SubChanLen (64 Ki) pointers, made every pull request allocate
// 512 KiB that the garbage collector then scanned.
func subscribeRequest(nc *nats.Conn, n int) (*request, error) {
	msgs := make(chan *nats.Msg, n+requestStatusRoom)
	sub, err := nc.ChanSubscribe(nc.NewInbox(), msgs)
	if err != nil {
		return nil, err
	}
	return &request{Subscription: sub, msgs: msgs}, nil
}

// requestStatusRoom is the room for status messages in a pull request's
// channel, besides its messages: the server ends a request with one status
// at most, and relay asks for no heartbeats.
const requestStatusRoom = 8

// isStatus reports whether msg is a status message of the pull request
// rather than a stored message. A stored message may itself have an empty
// payload and a Status header (a Watermill message with metadata Status), so
// the header alone does not decide: a stored message always carries the
// $JS.ACK reply subject to acknowledge it, a status message never does.
func isStatus(msg *nats.Msg) bool {
	return len(msg.Data) == 0 && msg.Header.Get("Status") != "" &&
		!strings.HasPrefix(msg.Reply, "$JS.ACK.")
}

// pullStatus reads a status message: end is true when the pull request is
// over (no messages, expired); err when it failed.
func pullStatus(msg *nats.Msg) (end bool, err error) {
	if !isStatus(msg) {
		return false, nil
	}
	switch code := msg.Header.Get("Status"); code {
	case "100": // heartbeat or flow control
		return false, nil
	case "404", "408":
		return true, nil
	case "503":
		return true, nats.ErrNoResponders
	default:
		return true, fmt.Errorf("pull request: status %s %s", code, msg.Header.Get("Description"))
	}
}

// nextSubject is the subject of pull requests of consumer on stream, under
// the API prefix or domain of the caller's JetStream.
func (e *engine) nextSubject(stream, consumer string) string {
	o := e.js.Options()
	prefix := "$JS.API."
	switch {
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		prefix = o.APIPrefix
		if !strings.HasSuffix(prefix, ".") {
			prefix += "."
		}
	}
	return prefix + "CONSUMER.MSG.NEXT." + stream + "." + consumer
}
