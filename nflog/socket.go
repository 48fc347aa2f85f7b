package nflog

// The Listener's socket: opened in its namespace, its options set, and its
// groups bound with one configuration request each.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Configuration attributes and values (enum nfulnl_attr_config).
const (
	attrCfgCmd      = 1 // NFULA_CFG_CMD: u8 command
	attrCfgMode     = 2 // NFULA_CFG_MODE: be32 copy range, u8 copy mode, pad
	attrCfgNlBufSiz = 3 // NFULA_CFG_NLBUFSIZ: be32
	attrCfgTimeout  = 4 // NFULA_CFG_TIMEOUT: be32, 1/100 s
	attrCfgQThresh  = 5 // NFULA_CFG_QTHRESH: be32
	attrCfgFlags    = 6 // NFULA_CFG_FLAGS: be16

	cmdBind = 1 // NFULNL_CFG_CMD_BIND

	copyPacket = 2 // NFULNL_COPY_PACKET

	flagSeq       = 0x0001 // NFULNL_CFG_F_SEQ
	flagSeqGlobal = 0x0002 // NFULNL_CFG_F_SEQ_GLOBAL

	// maxNlBufSiz is the largest batch the kernel takes.
	maxNlBufSiz = 131072
)

// openSocket opens the Listener's raw netlink socket in cfg's namespace and
// sets its options; receives time out after cfg's request timeout until
// the groups are bound.
func openSocket(cfg *Config) (int, error) {
	var fd int
	err := netns.Do(cfg.NetNS, func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("opening nflog netlink socket: %w", err)
	}
	if err := setSocketOptions(fd, cfg); err != nil {
		unix.Close(fd)
		return 0, err
	}
	return fd, nil
}

func setSocketOptions(fd int, cfg *Config) error {
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding nflog netlink socket: %w", err)
	}
	if cfg.ReadBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.ReadBuffer); err != nil {
			return fmt.Errorf("setting the nflog receive buffer to %d bytes: %w", cfg.ReadBuffer, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1); err != nil {
		return fmt.Errorf("setting NETLINK_NO_ENOBUFS: %w", err)
	}
	return setTimeout(fd, cfg.timeout())
}

// setTimeout sets the socket's receive timeout.
func setTimeout(fd int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting the receive timeout: %w", err)
	}
	return nil
}

// configRequest builds the request that binds group (cmd cmdBind) with
// cfg's copy mode, batch and flags, or sends command cmd alone.
func configRequest(buf []byte, seq uint32, group uint16, cmd uint8, cfg *Config) []byte {
	b := buf[:0]
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set below
	b = binary.NativeEndian.AppendUint16(b, typeConfig)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, unix.AF_UNSPEC, 0) // nfgen_family, version
	b = binary.BigEndian.AppendUint16(b, group)
	b = appendAttr(b, attrCfgCmd, []byte{cmd})
	if cmd == cmdBind {
		var mode [6]byte
		binary.BigEndian.PutUint32(mode[:], uint32(cfg.copyRange()))
		mode[4] = copyPacket
		b = appendAttr(b, attrCfgMode, mode[:])
		b = appendAttr(b, attrCfgNlBufSiz, binary.BigEndian.AppendUint32(nil, uint32(cfg.batchSize())))
		b = appendAttr(b, attrCfgTimeout, binary.BigEndian.AppendUint32(nil, uint32(cfg.flushTimeout()/(10*time.Millisecond))))
		b = appendAttr(b, attrCfgQThresh, binary.BigEndian.AppendUint32(nil, uint32(cfg.queueThreshold())))
		b = appendAttr(b, attrCfgFlags, binary.BigEndian.AppendUint16(nil, flagSeq|flagSeqGlobal))
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

// appendAttr appends a netlink attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlwire.AttrHeaderLen+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// request sends a configuration request for group and waits for its
// acknowledgement. Datagrams of logged packets that arrive meanwhile (from
// groups bound already) are kept in l.pending for Run.
func (l *Listener) request(group uint16, cmd uint8) error {
	l.reqSeq++
	seq := l.reqSeq
	req := configRequest(make([]byte, 0, 128), seq, group, cmd, &l.cfg)
	if err := unix.Sendto(l.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sending nflog configuration of group %d: %w", group, err)
	}
	deadline := time.Now().Add(l.cfg.timeout())
	for time.Now().Before(deadline) {
		n, err := l.recv()
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("configuring nflog group %d: %w within %v", group, errNoAnswer, l.cfg.timeout())
		case errors.Is(err, unix.ENOBUFS):
			continue
		case err != nil:
			return fmt.Errorf("configuring nflog group %d: %w", group, err)
		}
		if n > len(l.buf) {
			continue
		}
		d := l.buf[:n]
		if errno, ok := ackOf(d, seq); ok {
			if errno != 0 {
				return errno
			}
			return nil
		}
		if len(l.pending) < maxPending {
			l.pending = append(l.pending, append([]byte(nil), d...))
		}
	}
	return fmt.Errorf("configuring nflog group %d: %w within %v", group, errNoAnswer, l.cfg.timeout())
}

// maxPending bounds the datagrams kept while groups are being bound.
const maxPending = 1024

// ackOf returns the error number of the acknowledgement of request seq in
// datagram d; ok is false if d holds none.
func ackOf(d []byte, seq uint32) (unix.Errno, bool) {
	for len(d) > 0 {
		m, rest, ok := nlwire.NextMessage(d)
		if !ok {
			return 0, false
		}
		d = rest
		if m.Type == nlwire.TypeError && m.Seq == seq && len(m.Payload) >= 4 {
			code := int32(binary.NativeEndian.Uint32(m.Payload))
			return unix.Errno(-code), true
		}
	}
	return 0, false
}

// bind binds every configured group; a group held by another socket is
// reported with its holder.
func (l *Listener) bind() error {
	for _, g := range l.cfg.Groups {
		err := l.request(g, cmdBind)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EPERM) {
			if who := holder(l.cfg.NetNS, g); who != "" {
				return fmt.Errorf("binding nflog group %d: %w: %s; log to another group too (a second log statement) and give the exporter that one", g, errGroupHeld, who)
			}
		}
		return fmt.Errorf("binding nflog group %d: %w", g, err)
	}
	return nil
}
