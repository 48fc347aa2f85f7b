package nfacct

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlconn"
)

// DefaultTimeout bounds every request when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config configures a Conn or a Listener.
type Config struct {
	// NetNS is an open file descriptor of the network namespace to talk to
	// (for example of /var/run/netns/fw); zero means the caller's namespace.
	// It must stay open as long as the Conn, which may dial again with it.
	NetNS int
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

func (c *Config) netlink() *netlink.Config {
	if c == nil {
		return &netlink.Config{}
	}
	return &netlink.Config{NetNS: c.NetNS}
}

func (c *Config) timeout() time.Duration {
	if c == nil || c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Conn is a request connection to nfnetlink_acct. It is safe for concurrent
// use; requests are serialised.
type Conn struct {
	sock *nlconn.Conn[*netlink.Conn]
}

// Dial opens a Conn in the namespace cfg names. cfg may be nil; its NetNS
// must stay open as long as the Conn, which may dial again with it.
func Dial(cfg *Config) (*Conn, error) {
	return newConn(func() (*netlink.Conn, error) { return dial(cfg) }, cfg.timeout())
}

// dial opens a netfilter netlink socket in the namespace cfg names.
func dial(cfg *Config) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg.netlink())
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket: %w", err)
	}
	if err := sizeDumps(c, cfg.timeout()); err != nil {
		c.Close()
		return nil, fmt.Errorf("opening the nfacct socket: %w", err)
	}
	return c, nil
}

// dumpBuffer is the size of the messages sizeDumps asks the kernel for:
// netlink's largest.
const dumpBuffer = 32 << 10

// sizeDumps makes the kernel fill the messages of c's dumps up to 32 KiB
// instead of one page. Netlink sizes the messages of a dump by the largest
// buffer the socket's reader has received into, and mdlayher/netlink
// receives into a page. The kernel's nfacct dump costs more than its
// objects when its messages are small (10,000 objects take 24 times as
// long as 1,000), and a dump of 10,000 objects takes 35-45% less time in
// 32 KiB messages (BENCHMARKS.md). sizeDumps sends a no-op request the
// kernel acknowledges and receives the acknowledgement into a buffer of
// that size.
func sizeDumps(c *netlink.Conn, timeout time.Duration) error {
	if _, err := c.Send(netlink.Message{Header: netlink.Header{Type: unix.NLMSG_NOOP, Flags: netlink.Request | netlink.Acknowledge}}); err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf := make([]byte, dumpBuffer)
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	// The answer is an acknowledgement: an error message whose code is 0.
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	if len(msgs) != 1 || msgs[0].Header.Type != unix.NLMSG_ERROR || len(msgs[0].Data) < 4 {
		return fmt.Errorf("%w: %d messages, the first of type %d", errNoAck, len(msgs), msgs[0].Header.Type)
	}
	if code := int32(binary.NativeEndian.Uint32(msgs[0].Data[:4])); code != 0 {
		// The kernel checks permissions on the first request: say so in
		// plain words (EPERM: the process lacks CAP_NET_ADMIN).
		return fmt.Errorf("the kernel refused its first request: %w", syscall.Errno(-code))
	}
	return nil
}

// newConn returns a Conn whose sockets dial opens.
func newConn(dial func() (*netlink.Conn, error), timeout time.Duration) (*Conn, error) {
	sock, err := nlconn.New(dial, timeout, errClosed)
	if err != nil {
		return nil, err
	}
	return &Conn{sock: sock}, nil
}

// Close closes the connection. It may be called more than once.
func (c *Conn) Close() error {
	return c.sock.Close()
}

// List dumps every accounting object with its counters. It never resets
// them.
func (c *Conn) List(ctx context.Context) ([]Object, error) {
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysAcct,
		MessageType: msgGet,
		Family:      netfilter.ProtoUnspec,
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("building nfacct dump request: %w", err)
	}
	msgs, err := c.query(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("dumping nfacct objects: %w", err)
	}
	objs := make([]Object, 0, len(msgs))
	for _, m := range msgs {
		o, err := unmarshalObject(m)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// Create adds the accounting object o. Packets and Bytes, when non-zero, set
// the initial counters; a quota object sets FlagQuotaPackets or
// FlagQuotaBytes and Quota. It fails if an object of that name exists.
func (c *Conn) Create(ctx context.Context, o Object) error {
	attrs, err := marshalObject(o)
	if err != nil {
		return err
	}
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysAcct,
		MessageType: msgNew,
		Family:      netfilter.ProtoUnspec,
		Flags:       netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl,
	}, attrs)
	if err != nil {
		return fmt.Errorf("building nfacct create request: %w", err)
	}
	if _, err := c.query(ctx, req); err != nil {
		return fmt.Errorf("creating nfacct object %q: %w", o.Name, err)
	}
	return nil
}

// Delete removes the accounting object called name. The kernel refuses to
// delete an object a rule still uses.
func (c *Conn) Delete(ctx context.Context, name string) error {
	// An empty name would ask the kernel to delete every unused object.
	if err := validateName(name); err != nil {
		return err
	}
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysAcct,
		MessageType: msgDel,
		Family:      netfilter.ProtoUnspec,
		Flags:       netlink.Request | netlink.Acknowledge,
	}, []netfilter.Attribute{{Type: attrName, Data: append([]byte(name), 0)}})
	if err != nil {
		return fmt.Errorf("building nfacct delete request: %w", err)
	}
	if _, err := c.query(ctx, req); err != nil {
		return fmt.Errorf("deleting nfacct object %q: %w", name, err)
	}
	return nil
}

// query sends req and waits for its answer, bounded by the Conn's timeout
// and by ctx.
func (c *Conn) query(ctx context.Context, req netlink.Message) ([]netlink.Message, error) {
	var msgs []netlink.Message
	err := c.sock.Do(ctx, func(nc *netlink.Conn) error {
		var err error
		msgs, err = nc.Execute(req)
		return err
	})
	return msgs, err
}
