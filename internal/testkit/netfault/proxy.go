package netfault

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is an in-process TCP proxy on a loopback port that forwards every
// connection to one upstream address and injects network faults between a
// client and its server: [Proxy.Cut], [Proxy.SetLatency] and
// [Proxy.BlackHole]. Its methods are safe for concurrent use.
//
// Every connection has four goroutines: one reader and one writer per
// direction, the writer applying the latency. [Proxy.Close] closes the
// listener and every connection and waits for all of them.
type Proxy struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	latency  atomic.Int64 // time.Duration added to every chunk
	accepted atomic.Int64 // connections accepted from clients
	chunks   atomic.Int64 // reads from clients (about one per request)
	dropped  atomic.Int64 // bytes swallowed by a black hole

	mu     sync.Mutex
	closed bool
	hole   bool
	refuse bool
	conns  map[*link]struct{}
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	once           sync.Once
	lossy          atomic.Bool // lost data in a black hole: reset on heal
}

// close closes both ends abortively (TCP reset), as a network failure would
// look to them.
func (l *link) close() {
	l.once.Do(func() {
		reset(l.client)
		reset(l.server)
	})
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// NewProxy listens on a free 127.0.0.1 port and forwards connections to
// upstream ("host:port"). The caller must call [Proxy.Close].
func NewProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netfault: proxy listen: %w", err)
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's "127.0.0.1:port": clients dial it instead of the
// upstream.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is the number of client connections accepted so far: a rate of
// reconnection attempts.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Chunks is the number of reads from clients so far, about one per request
// sent: a rate of commands, also while a black hole swallows them.
func (p *Proxy) Chunks() int64 { return p.chunks.Load() }

// Dropped is the number of bytes black holes have swallowed so far.
func (p *Proxy) Dropped() int64 { return p.dropped.Load() }

// Conns is the number of connections open now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Cut closes every open connection abruptly (TCP reset), as a network
// failure or a middlebox dropping its state would. New connections are
// accepted and forwarded as before.
func (p *Proxy) Cut() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// SetLatency delays every chunk of data, in both directions, by d from the
// moment the proxy read it; zero turns it off. Order is kept.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// BlackHole, with on, makes the proxy swallow silently every byte in both
// directions, on open and on new connections: no error, no close, no answer,
// as a network path that drops every packet. With on false it heals: the
// connections that lost data in between are reset (their byte streams have
// holes, and TCP would have given up on them), and traffic flows again.
func (p *Proxy) BlackHole(on bool) {
	p.mu.Lock()
	p.hole = on
	var lossy []*link
	if !on {
		for l := range p.conns {
			if l.lossy.Load() {
				lossy = append(lossy, l)
			}
		}
	}
	p.mu.Unlock()
	for _, l := range lossy {
		l.close()
	}
}

// Refuse, with on, makes the proxy reset every new connection at once, as
// an unreachable server would; open connections are not touched ([Proxy.Cut]
// them first). With on false, new connections are forwarded again.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

func (p *Proxy) refusing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refuse
}

func (p *Proxy) inHole() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hole
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines. It may be called more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	var err error
	if !already {
		err = p.ln.Close()
	}
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient accept error; the listener is still open
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the upstream for client c and pumps both ways until either
// side closes or the link is cut.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	if p.refusing() {
		reset(c)
		return
	}
	s, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		// The server is down: the client sees the connection refused, late.
		reset(c)
		return
	}
	l := &link{client: c, server: s}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(l, c, s, true) }()
	go func() { defer wg.Done(); p.pump(l, s, c, false) }()
	wg.Wait()
	l.close()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

type chunk struct {
	data []byte
	at   time.Time
}

// pump copies from src to dst through a bounded queue, so that latency
// delays chunks without throttling throughput. A black hole drops what is
// read while it lasts.
func (p *Proxy) pump(l *link, src, dst net.Conn, fromClient bool) {
	queue := make(chan chunk, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ch := range queue {
			if d := time.Until(ch.at.Add(time.Duration(p.latency.Load()))); d > 0 {
				time.Sleep(d)
			}
			if p.inHole() {
				p.dropped.Add(int64(len(ch.data)))
				l.lossy.Store(true)
				continue
			}
			if _, err := dst.Write(ch.data); err != nil {
				l.close()
				for range queue { // let the reader finish
				}
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient {
				p.chunks.Add(1)
			}
			if p.inHole() {
				p.dropped.Add(int64(n))
				l.lossy.Store(true)
			} else {
				queue <- chunk{data: append([]byte(nil), buf[:n]...), at: time.Now()}
			}
		}
		if err != nil {
			if err == io.EOF {
				// Half-close: pass the FIN on once the queue is written.
				close(queue)
				<-done
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
				return
			}
			l.close()
			close(queue)
			<-done
			return
		}
	}
}
