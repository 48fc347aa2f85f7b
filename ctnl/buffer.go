package ctnl

// Receive buffer growth: after drops, the Listener doubles its buffer up to
// ListenConfig.MaxReadBuffer.

import "time"

// grow doubles the receive buffer, up to its maximum, when the kernel has
// dropped events since the last check. Unless overrun is true it checks at
// most every 100ms.
func (l *Listener) grow(overrun bool) {
	if l.maxBuf <= l.buf || (!overrun && time.Since(l.lastCheck) < 100*time.Millisecond) {
		return
	}
	l.lastCheck = time.Now()
	drops, err := l.drops()
	if err != nil || drops == l.lastDrops {
		return
	}
	l.lastDrops = drops
	size := min(2*max(l.buf, 1<<20), l.maxBuf)
	if err := l.sock.setReadBuffer(size); err != nil {
		return
	}
	l.buf = size
	l.growths.Add(1)
}
