package nftables

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/fuzztest"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netlinktest"
	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// isDecodeError reports whether err is one the decoders of objects and
// rules return: a malformed attribute or a missing one.
func isDecodeError(err error) bool {
	return errors.Is(err, errAttribute) || errors.Is(err, errIncomplete)
}

// encodeCounter writes c as the attributes of an NFT_MSG_NEWOBJ message.
func encodeCounter(t testing.TB, c Counter) []byte {
	return attrs(t, str(objTable, c.Table), str(objName, c.Name), u32(objType, objectCounter), counterData(c.Packets, c.Bytes))
}

// encodeQuota writes q as the attributes of an NFT_MSG_NEWOBJ message.
func encodeQuota(t testing.TB, q Quota) []byte {
	var flags uint32
	if q.Over {
		flags |= quotaFlagInv
	}
	if q.Exhausted {
		flags |= quotaFlagDepleted
	}
	return attrs(t, str(objTable, q.Table), str(objName, q.Name), u32(objType, objectQuota),
		nested(objData, u64(quotaBytes, q.Limit), u64(quotaConsumed, q.Used), u32(quotaFlags, flags)))
}

// encodeRule writes r as the attributes of an NFT_MSG_NEWRULE message: its
// counter the only expression, its comment the only user data record,
// without a NUL (a comment may fill the record's 255 bytes).
func encodeRule(t testing.TB, r RuleCounter) []byte {
	a := []netfilter.Attribute{str(ruleTable, r.Table), str(ruleChain, r.Chain), u64(ruleHandle, r.Handle),
		nested(ruleExpressions, expr("counter", u64(counterBytes, r.Bytes), u64(counterPackets, r.Packets)))}
	if r.Comment != "" {
		a = append(a, raw(ruleUserdata, append([]byte{udataComment, byte(len(r.Comment))}, r.Comment...)...))
	}
	return attrs(t, a...)
}

// FuzzDecode decodes any bytes as the attributes of an object and of a rule,
// as a dump's messages hold them after their nfgenmsg header, and walks them
// as a datagram and as the payload of a DONE and an error message. An error
// is one of the package's (errors.Is), a syscall.Errno for DONE and error
// messages; a message decodes to one counter or quota at most, with names
// without NULs, and what it decodes to, written again, decodes to the same;
// and decoding allocates in proportion to the input at most.
func FuzzDecode(f *testing.F) {
	for _, tt := range decodeObjectTests {
		f.Add(attrs(f, tt.attrs...))
	}
	f.Add(attrs(f, str(ruleTable, "t"), str(ruleChain, "c"), u64(ruleHandle, 1),
		nested(ruleExpressions, expr("cmp", u32(1, 1)), expr("counter", u64(counterBytes, 1), u64(counterPackets, 1))),
		raw(ruleUserdata, udata(record(1, "x"), record(udataComment, "web in"))...)))
	f.Add(encodeRule(f, RuleCounter{Table: "t", Chain: "c", Handle: 1 << 40, Comment: strings.Repeat("c", 255)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var o Objects
		var err error
		fuzztest.Bounded(t, len(b), func() {
			o = Objects{}
			err = o.decode(FamilyINet, b, make(interner))
		})
		if n := len(o.Counters) + len(o.Quotas); n > 1 || (err != nil && n > 0) {
			t.Fatalf("one message decoded to %d objects, error %v", n, err)
		}
		switch {
		case err != nil:
			if !isDecodeError(err) {
				t.Fatalf("decoding an object: %v, not one of the package's errors", err)
			}
		case len(o.Counters) == 1:
			c := o.Counters[0]
			if strings.IndexByte(c.Table+c.Name, 0) >= 0 {
				t.Fatalf("counter %+v has a NUL in its names", c)
			}
			var again Objects
			if err := again.decode(FamilyINet, encodeCounter(t, c), make(interner)); err != nil || len(again.Counters) != 1 || again.Counters[0] != c {
				t.Fatalf("%+v written again decodes to %+v, %v", c, again, err)
			}
		case len(o.Quotas) == 1:
			q := o.Quotas[0]
			if strings.IndexByte(q.Table+q.Name, 0) >= 0 {
				t.Fatalf("quota %+v has a NUL in its names", q)
			}
			var again Objects
			if err := again.decode(FamilyINet, encodeQuota(t, q), make(interner)); err != nil || len(again.Quotas) != 1 || again.Quotas[0] != q {
				t.Fatalf("%+v written again decodes to %+v, %v", q, again, err)
			}
		}

		var r RuleCounter
		var ok bool
		fuzztest.Bounded(t, len(b), func() { r, ok, err = decodeRule(FamilyINet, b, make(interner)) })
		switch {
		case err != nil:
			if ok || !isDecodeError(err) {
				t.Fatalf("decoding a rule: ok %v, %v, not one of the package's errors", ok, err)
			}
		case ok:
			if strings.IndexByte(r.Table+r.Chain+r.Comment, 0) >= 0 || len(r.Comment) > 255 {
				t.Fatalf("rule %+v has a NUL in its names or a comment longer than a record", r)
			}
			again, ok, err := decodeRule(FamilyINet, encodeRule(t, r), make(interner))
			if err != nil || !ok || again != r {
				t.Fatalf("%+v written again decodes to %+v, %v, %v", r, again, ok, err)
			}
		}

		for rest := b; len(rest) > 0; {
			if _, rest, err = nextMessage(rest); err != nil {
				if !errors.Is(err, errTruncated) {
					t.Fatalf("nextMessage: %v, want errTruncated", err)
				}
				break
			}
		}
		var errno syscall.Errno
		if err := errorMessage(b); !errors.Is(err, errTruncated) && !errors.Is(err, errUnexpected) && !errors.As(err, &errno) {
			t.Fatalf("errorMessage: %v, want errTruncated, errUnexpected or an errno", err)
		}
		if err := doneError(b); err != nil && !errors.As(err, &errno) {
			t.Fatalf("doneError: %v, want nil or an errno", err)
		}
	})
}

// FuzzDumpDatagram gives any bytes, cut in two datagrams at cut, to the
// reader of an object dump's answer (request 1), which decodes its parts as
// Conn.Objects does. Until the answer's end, an error is errTruncated (a
// datagram that does not split into messages); the end's is nil, one of
// the package's (errors.Is) or an errno, and nil only when every part
// decoded and none was flagged inconsistent. Every part given to the
// decoder lies within its datagram, the parts are no more than the
// datagram has room for, and reading allocates in proportion to the input
// at most.
func FuzzDumpDatagram(f *testing.F) {
	req := netlink.Message{Header: netlink.Header{Sequence: 1, PID: 1}}
	web := counterObj(f, req, FamilyINet, "filter", "web", 12, 3400)
	quota := msg(f, req, subsysNftables<<8|msgNewObj, netlink.Multi, FamilyIPv4, decodeObjectTests[2].attrs...)
	intr := counterObj(f, req, FamilyIPv6, "t", "c", 1, 2)
	intr.Header.Flags |= nlwire.FlagDumpInterrupted
	other := counterObj(f, netlink.Message{Header: netlink.Header{Sequence: 2}}, FamilyINet, "t", "late", 1, 1)
	refused, err := netlinktest.Error(unix.EPERM, []netlink.Message{req})
	if err != nil {
		f.Fatal(err)
	}
	for _, d := range [][]byte{
		netlinktest.Datagram(web, quota, done(req, 0)),
		netlinktest.Datagram(other, web, intr, done(req, 0)),
		netlinktest.Datagram(web, done(req, unix.EINTR)),
		netlinktest.Datagram(refused...),
		netlinktest.Datagram(web, msg(f, req, subsysNftables<<8|msgNewRule, netlink.Multi, FamilyINet), done(req, 0)),
	} {
		f.Add(d, uint16(len(d)))
		f.Add(d, uint16(len(d)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		c := min(int(cut), len(b))
		datagrams := [][]byte{b[:c], b[c:]}
		var objs Objects
		var parts int
		var done, failed bool
		var err error
		fuzztest.Bounded(t, len(b), func() {
			objs, parts, failed = Objects{}, 0, false
			names := make(interner)
			r := dumpReader{seq: 1, answer: msgNewObj, fn: func(fam Family, a []byte) error {
				if len(a) > 0 && !within(a, datagrams[0]) && !within(a, datagrams[1]) {
					t.Fatalf("part of %d bytes outside the datagrams", len(a))
				}
				parts++
				err := objs.decode(fam, a, names)
				failed = failed || err != nil
				return err
			}}
			for _, d := range datagrams {
				if done, err = r.datagram(d); done || err != nil {
					return
				}
			}
		})
		if most := len(b) / (nlwire.HeaderLen + nlwire.NfgenLen); parts > most || len(objs.Counters)+len(objs.Quotas) > parts {
			t.Fatalf("%d parts and %d objects from %d bytes", parts, len(objs.Counters)+len(objs.Quotas), len(b))
		}
		var errno syscall.Errno
		switch {
		case !done:
			if err != nil && !errors.Is(err, errTruncated) {
				t.Fatalf("before the end: %v, want errTruncated", err)
			}
		case err == nil:
			if failed {
				t.Fatal("the answer ends without an error after a part that did not decode")
			}
		default:
			if !isDecodeError(err) && !errors.Is(err, errTruncated) && !errors.Is(err, errUnexpected) &&
				!errors.Is(err, errInterrupted) && !errors.As(err, &errno) {
				t.Fatalf("at the end: %v, not one of the package's errors nor an errno", err)
			}
		}
	})
}

// within reports whether the non-empty slice a lies inside b.
func within(a, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	start, end := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[0]))+uintptr(len(b))
	p := uintptr(unsafe.Pointer(&a[0]))
	return p >= start && p+uintptr(len(a)) <= end
}
