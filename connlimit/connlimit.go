// Package connlimit caps the connections an HTTP server holds, in all and
// per client address, so that no client can take the slots of others: not
// with thousands of idle keep-alive connections, nor with connections that
// trickle their headers a line at a time (slowloris).
//
// Wrap the server's listener, and give the server the Listener's
// ConnState, which tells it which connections have finished their
// headers:
//
//	ln := connlimit.New(inner, connlimit.Limits{Max: 4096, PerAddr: 256})
//	srv := &http.Server{Handler: h, ConnState: ln.ConnState, ReadHeaderTimeout: 2 * time.Second}
//	srv.Serve(ln)
//
// At a cap, a new connection takes the slot of a waiting one (a
// connection still sending its first request's headers, or idle between
// requests: the oldest of them, of the same address at the per-address
// cap), which is closed; only when every connection has a request in
// flight is the new one refused (closed at once). A client trickling
// headers therefore holds nothing another client needs, and its own
// address's cap bounds what it holds at all.
//
// Behind a proxy or load balancer every client shares the proxy's
// address: set PerAddr to 0 (no per-address cap) there, and cap per
// client at the proxy, which sees them.
package connlimit

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// Limits are the caps; 0 is no cap.
type Limits struct {
	Max     int // connections open at once, in all
	PerAddr int // connections open at once from one client IP address
	// Refused, if not nil, is called (without the Listener's lock) for
	// each connection closed at a cap: a new one refused (evicted false)
	// or a waiting one evicted to make room. Use it to count or sample;
	// it may be called in floods.
	Refused func(addr netip.Addr, evicted bool)
}

// Listener is a capped net.Listener. Use New.
type Listener struct {
	net.Listener
	lim Limits

	mu      sync.Mutex
	open    int
	byAddr  map[netip.Addr]*addrConns
	waiting list.List // *conn, oldest first: connections not serving a request
}

type addrConns struct {
	open    int
	waiting list.List // *conn of this address, oldest first
}

// New wraps ln. Accept returns connections of the Listener's own type;
// give the server the Listener's ConnState so that it knows which of them
// are serving a request.
func New(ln net.Listener, lim Limits) *Listener {
	return &Listener{Listener: ln, lim: lim, byAddr: make(map[netip.Addr]*addrConns)}
}

type conn struct {
	net.Conn
	l        *Listener
	addr     netip.Addr
	elem     *list.Element // in l.waiting; nil while serving a request
	addrElem *list.Element // in the address's waiting list
	closed   bool          // counted out of the Listener
}

// Accept waits for a connection within the caps: see the package doc.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := addrOf(nc.RemoteAddr())
		c := &conn{Conn: nc, l: l, addr: addr}
		evicted, ok := l.admit(c)
		for _, e := range evicted {
			_ = e.Conn.Close()
			l.refused(e.addr, true)
		}
		if ok {
			return c, nil
		}
		_ = nc.Close()
		l.refused(addr, false)
	}
}

func (l *Listener) refused(addr netip.Addr, evicted bool) {
	if l.lim.Refused != nil {
		l.lim.Refused(addr, evicted)
	}
}

// admit counts c in, making room by evicting waiting connections, and
// returns those to close; false: no room (c is not counted).
func (l *Listener) admit(c *conn) (evicted []*conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.byAddr[c.addr]
	if a == nil {
		a = &addrConns{}
	}
	if l.lim.PerAddr > 0 && a.open >= l.lim.PerAddr {
		front := a.waiting.Front()
		if front == nil {
			return nil, false // every connection of the address is serving a request
		}
		evicted = append(evicted, l.out(front.Value.(*conn)))
	}
	if l.lim.Max > 0 && l.open >= l.lim.Max {
		front := l.waiting.Front()
		if front == nil {
			return evicted, false
		}
		evicted = append(evicted, l.out(front.Value.(*conn)))
	}
	if a.open == 0 {
		l.byAddr[c.addr] = a
	}
	l.open++
	a.open++
	c.elem, c.addrElem = l.waiting.PushBack(c), a.waiting.PushBack(c)
	return evicted, true
}

// out counts c out of the Listener. The caller holds l.mu.
func (l *Listener) out(c *conn) *conn {
	if c.closed {
		return c
	}
	c.closed = true
	a := l.byAddr[c.addr]
	if c.elem != nil {
		l.waiting.Remove(c.elem)
		a.waiting.Remove(c.addrElem)
		c.elem, c.addrElem = nil, nil
	}
	l.open--
	if a.open--; a.open == 0 {
		delete(l.byAddr, c.addr)
	}
	return c
}

// ConnState is the http.Server's ConnState hook: a connection whose
// request's headers have been read (StateActive) cannot be evicted until
// it is idle again.
func (l *Listener) ConnState(nc net.Conn, state http.ConnState) {
	c, ok := nc.(*conn)
	if !ok || c.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed {
		return
	}
	a := l.byAddr[c.addr]
	switch state {
	case http.StateActive, http.StateHijacked:
		if c.elem != nil {
			l.waiting.Remove(c.elem)
			a.waiting.Remove(c.addrElem)
			c.elem, c.addrElem = nil, nil
		}
		if state == http.StateHijacked { // no longer the server's: count it out
			l.out(c)
		}
	case http.StateIdle:
		if c.elem == nil {
			c.elem, c.addrElem = l.waiting.PushBack(c), a.waiting.PushBack(c)
		}
	case http.StateClosed:
		l.out(c)
	}
}

// Close closes the connection and counts it out.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	c.l.out(c)
	c.l.mu.Unlock()
	return err
}

// Open is how many connections the Listener holds.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
