package nflog

// Who holds a group: /proc/net/netfilter/nfnetlink_log of the namespace
// names the netlink port that bound it, /proc/net/netlink that port's
// socket inode, and the processes' descriptors the socket.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// netlinkNetfilter is NETLINK_NETFILTER, as /proc/net/netlink's Eth column
// shows it.
const netlinkNetfilter = 12

// holder describes who has bound group in the namespace netNS, as well as
// /proc lets it be known: "netlink port 1234 (process 1234 ulogd)". It
// returns "" when the group is not listed as bound.
func holder(netNS int, group uint16) string {
	var portid, inode string
	_ = netns.Do(netNS, func() error {
		// thread-self: the namespace of this thread, which Do entered.
		portid = procField("/proc/thread-self/net/netfilter/nfnetlink_log", 0, strconv.Itoa(int(group)), 1)
		if portid != "" {
			inode = procNetlinkInode(portid)
		}
		return nil
	})
	if portid == "" {
		return ""
	}
	who := "netlink port " + portid
	if p := socketOwner(inode); p != "" {
		who += " (" + p + ")"
	}
	return who
}

// procField returns field want of the first line of file whose field key
// reads value; "" if there is none.
func procField(file string, key int, value string, want int) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > max(key, want) && fields[key] == value {
			return fields[want]
		}
	}
	return ""
}

// procNetlinkInode returns the inode of the NETLINK_NETFILTER socket whose
// port is portid, from /proc/net/netlink.
func procNetlinkInode(portid string) string {
	f, err := os.Open("/proc/thread-self/net/netlink")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
		fields := strings.Fields(s.Text())
		if len(fields) >= 10 && fields[1] == strconv.Itoa(netlinkNetfilter) && fields[2] == portid {
			return fields[9]
		}
	}
	return ""
}

// socketOwner returns "process PID NAME" for the first process with a
// descriptor of the socket inode; "" when none is found (another PID
// namespace, or no permission to read its descriptors).
func socketOwner(inode string) string {
	if inode == "" || inode == "0" {
		return ""
	}
	target := "socket:[" + inode + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range procs {
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && link == target {
				pid := filepath.Base(dir)
				comm, _ := os.ReadFile(dir + "/comm")
				return fmt.Sprintf("process %s %s", pid, strings.TrimSpace(string(comm)))
			}
		}
	}
	return ""
}
