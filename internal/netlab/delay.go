package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel has no netem here, so delay is done in user space: an
// iptables NFQUEUE rule in the hub hands each packet a host sends to a
// delayer, which holds it for the delay and then tells the kernel to let
// it pass. The nfnetlink_queue protocol is small enough to speak directly
// (linux/netfilter/nfnetlink_queue.h); the numbers it carries are
// big-endian, the netlink headers around them in host order.
const (
	nfnlSubsysQueue      = 3 // message types are subsystem<<8 | message
	nfqnlMsgPacket       = 0
	nfqnlMsgConfig       = 2
	nfqnlMsgVerdictBatch = 3

	nfqaPacketHdr  = 1 // in packet messages: packet id, protocol, hook
	nfqaVerdictHdr = 2 // in verdicts: verdict, packet id

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxlen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind = 1
	nfqnlCopyMeta   = 1 // the delayer needs the packet id, not the bytes
	nfqaCfgFGSO     = 4 // hand over GSO packets whole instead of segmenting them
	nfAccept        = 1

	// Packets one queue may hold: ~100 Mbit/s for a second. Past it the
	// kernel drops, as a router with a full buffer would.
	queueMaxlen = 1 << 13
	// Room for the notices of a burst that arrives while the delayer is busy.
	socketBuffer = 16 << 20
)

// A delayer holds the packets of one NFQUEUE queue for a delay and then
// accepts them, in the order they came.
type delayer struct {
	conn  *netlink.Conn
	raw   syscall.RawConn // the hot path: no allocation or goroutine per packet
	buf   []byte
	queue uint16
	delay atomic.Int64  // nanoseconds
	quit  chan struct{} // closed to stop at once; held packets are dropped
	drain chan struct{} // closed to stop once every held packet is released
	done  chan struct{} // closed when run has returned
	err   error         // why run failed, if it did; read after done
}

type heldPacket struct {
	id  uint32
	due time.Time
}

// startDelayer binds queue in the network namespace at nsPath and starts
// releasing its packets d after they arrive. The socket is created in
// that namespace (netlink does the thread juggling) and stays there;
// nothing else of this process enters it.
func startDelayer(nsPath string, queue uint16, d time.Duration) (*delayer, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("netlab: delayer: %w", err)
	}
	defer ns.Close()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns.Fd())})
	if err != nil {
		return nil, fmt.Errorf("netlab: delayer: netlink socket: %w", err)
	}
	dl := &delayer{conn: c, buf: make([]byte, 1<<16), queue: queue, quit: make(chan struct{}), drain: make(chan struct{}), done: make(chan struct{})}
	dl.delay.Store(int64(d))
	if err := dl.setup(); err != nil {
		c.Close()
		return nil, fmt.Errorf("netlab: delayer for queue %d: %w", queue, err)
	}
	go dl.run()
	return dl, nil
}

func (dl *delayer) setup() error {
	// A notice that does not fit the socket buffer means a dropped packet,
	// which TCP repairs; ENOBUFS errors would only stop the loop.
	if err := dl.conn.SetOption(netlink.NoENOBUFS, true); err != nil {
		return err
	}
	if err := dl.conn.SetReadBuffer(socketBuffer); err != nil {
		return err
	}
	raw, err := dl.conn.SyscallConn()
	if err != nil {
		return err
	}
	dl.raw = raw
	raw.Control(func(fd uintptr) { // root may exceed rmem_max
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer)
	})
	params := binary.BigEndian.AppendUint32(nil, 0) // copy range: nothing
	params = append(params, nfqnlCopyMeta)
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nfqaCfgCmd, Data: []byte{nfqnlCfgCmdBind, 0, 0, 0}},
		{Type: nfqaCfgParams, Data: params},
		{Type: nfqaCfgQueueMaxlen, Data: binary.BigEndian.AppendUint32(nil, queueMaxlen)},
		{Type: nfqaCfgMask, Data: binary.BigEndian.AppendUint32(nil, nfqaCfgFGSO)},
		{Type: nfqaCfgFlags, Data: binary.BigEndian.AppendUint32(nil, nfqaCfgFGSO)},
	})
	if err != nil {
		return err
	}
	_, err = dl.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(dl.nfgenmsg(), attrs...),
	})
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// nfgenmsg is the header every nfnetlink message starts with: family
// (unspecified), version 0, and the queue number.
func (dl *delayer) nfgenmsg() []byte {
	return []byte{unix.AF_UNSPEC, 0, byte(dl.queue >> 8), byte(dl.queue)}
}

// run receives packet notices and releases packets when they are due. The
// kernel numbers a queue's packets in order and a batch verdict accepts
// every packet up to an id, so all packets that are due go out with one
// message. Due times never decrease, even when the delay is lowered,
// which is what keeps the packets in order.
func (dl *delayer) run() {
	defer close(dl.done)
	defer func() {
		if dl.err != nil {
			// Unbinding at once lets traffic flow on, undelayed, through
			// the rule's --queue-bypass, instead of queueing for no one.
			dl.conn.Close()
		}
	}()
	var (
		held     []heldPacket
		last     time.Time // due time of the newest packet
		lastID   uint32
		draining bool
	)
	for {
		now := time.Now()
		n := 0
		for n < len(held) && !held[n].due.After(now) {
			n++
		}
		if n > 0 {
			if err := dl.accept(held[n-1].id); err != nil {
				dl.err = err
				return
			}
			held = held[n:]
		}
		if draining && len(held) == 0 {
			// The rule is gone, so only a straggler can have arrived after
			// the last notice read: let it pass undelayed, not dropped.
			dl.accept(lastID + 1<<30)
			return
		}
		var deadline time.Time // none: wait for a packet
		if len(held) > 0 {
			deadline = held[0].due
		}
		dl.conn.SetReadDeadline(deadline)
		// Checked after the deadline is set, so the deadline a stop sets
		// after this check is never overwritten.
		select {
		case <-dl.quit:
			return
		case <-dl.drain:
			if !draining {
				// Again from the top: with nothing held it ends, otherwise
				// it waits only until the next packet is due.
				draining = true
				continue
			}
		default:
		}
		now = time.Time{}
		err := dl.receive(func(id uint32) {
			if now.IsZero() {
				now = time.Now()
			}
			due := now.Add(time.Duration(dl.delay.Load()))
			if due.Before(last) {
				due = last
			}
			last, lastID = due, id
			held = append(held, heldPacket{id, due})
		})
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			dl.err = err
			return
		}
	}
}

// receive calls fn with the id of each packet whose notice waits on the
// socket, at most a few hundred so due packets are not kept waiting. It
// blocks, until the read deadline, only when none waits. Taking the
// notices in bulk keeps the delayer cheap at tens of thousands a second.
func (dl *delayer) receive(fn func(id uint32)) error {
	var rerr error
	got := 0
	err := dl.raw.Read(func(fd uintptr) bool {
		for got < 256 {
			n, _, err := unix.Recvfrom(int(fd), dl.buf, unix.MSG_DONTWAIT)
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				return got > 0 // false: wait until readable
			case err != nil:
				rerr = fmt.Errorf("receive: %w", err)
				return true
			}
			got++
			msgs, err := syscall.ParseNetlinkMessage(dl.buf[:n])
			if err != nil {
				rerr = fmt.Errorf("receive: %w", err)
				return true
			}
			for _, m := range msgs {
				switch m.Header.Type {
				case unix.NLMSG_ERROR:
					// Verdicts are sent without asking for an ack, so this
					// reports a failed one. ENOENT: the kernel had already
					// dropped the packets (their device went away).
					if len(m.Data) >= 4 {
						if e := syscall.Errno(-int32(binary.NativeEndian.Uint32(m.Data))); e != 0 && e != unix.ENOENT {
							rerr = fmt.Errorf("verdict: %w", e)
							return true
						}
					}
				case nfnlSubsysQueue<<8 | nfqnlMsgPacket:
					if id, ok := packetID(m.Data); ok {
						fn(id)
					}
				}
			}
		}
		return true
	})
	if rerr != nil {
		return rerr
	}
	return err
}

// accept lets every held packet up to id pass, with one batch verdict.
func (dl *delayer) accept(id uint32) error {
	const size = unix.SizeofNlMsghdr + 4 + unix.SizeofNlAttr + 8
	var m [size]byte
	binary.NativeEndian.PutUint32(m[0:], size)
	binary.NativeEndian.PutUint16(m[4:], nfnlSubsysQueue<<8|nfqnlMsgVerdictBatch)
	binary.NativeEndian.PutUint16(m[6:], unix.NLM_F_REQUEST)
	copy(m[16:], dl.nfgenmsg())
	binary.NativeEndian.PutUint16(m[20:], unix.SizeofNlAttr+8)
	binary.NativeEndian.PutUint16(m[22:], nfqaVerdictHdr)
	binary.BigEndian.PutUint32(m[24:], nfAccept)
	binary.BigEndian.PutUint32(m[28:], id)
	var serr error
	err := dl.raw.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), m[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if serr != nil {
		return fmt.Errorf("verdict: %w", serr)
	}
	return err
}

// packetID returns the kernel's id of the packet a notice is about.
func packetID(data []byte) (uint32, bool) {
	if len(data) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:]) // after the nfgenmsg
	if err != nil {
		return 0, false
	}
	for ad.Next() {
		if b := ad.Bytes(); ad.Type() == nfqaPacketHdr && len(b) >= 4 {
			return binary.BigEndian.Uint32(b), true
		}
	}
	return 0, false
}

// stop ends the delayer and closes its socket, which unbinds the queue.
// With drain it first releases what it holds, each packet when due;
// without, the kernel drops those packets.
func (dl *delayer) stop(drain bool) error {
	if drain {
		close(dl.drain)
	} else {
		close(dl.quit)
	}
	dl.conn.SetReadDeadline(time.Unix(1, 0))
	<-dl.done
	dl.conn.Close()
	if dl.err != nil {
		return fmt.Errorf("netlab: delayer for queue %d: %w", dl.queue, dl.err)
	}
	return nil
}

// inNS runs fn on an OS thread that has entered the network namespace at
// nsPath. The thread stays locked and exits with its goroutine, so no
// other goroutine ever runs in the lab's namespace.
func inNS(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(nsPath)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", nsPath, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
