package proto

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"time"
)

// ChatPayload returns a realistic chat-message JSON object of about 1 KB
// for the compression scenario: the harness's seq and ts first (so Parse
// finds them), then what a chat application publishes when a message is
// posted: ids, the author, the text, a mention, a reply excerpt,
// reactions, timestamps and flags. Everything that varies between
// messages (ids, author, text, reactions, times) is derived from seq, so a
// run is reproducible and no two neighbouring messages are identical.
func ChatPayload(seq, ts int64) []byte {
	r := newPick(seq)
	author := chatUsers[r.n(len(chatUsers))]
	other := chatUsers[r.n(len(chatUsers))]
	room := chatRooms[r.n(len(chatRooms))]
	created := time.Unix(0, ts).UTC()

	b := make([]byte, 0, 1200)
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"event":"message.created","id":"msg_`...)
	b = r.base32(b, 26)
	b = append(b, `","room":{"id":"`...)
	b = append(b, room.id...)
	b = append(b, `","name":`...)
	b = strconv.AppendQuote(b, room.name)
	b = append(b, `},"author":{"id":"`...)
	b = append(b, author.id...)
	b = append(b, `","username":"`...)
	b = append(b, author.username...)
	b = append(b, `","display_name":`...)
	b = strconv.AppendQuote(b, author.name)
	b = append(b, `,"avatar_url":"https://cdn.example.com/avatars/`...)
	b = append(b, author.id...)
	b = append(b, `/`...)
	b = r.hex(b, 16)
	b = append(b, `.webp","role":"`...)
	b = append(b, author.role...)
	b = append(b, `","status":"online"},"text":`...)
	text := append([]byte("@"+other.username+" "), chatSentences[r.n(len(chatSentences))]...)
	if r.n(2) == 0 {
		text = append(text, ' ')
		text = append(text, chatSentences[r.n(len(chatSentences))]...)
	}
	b = strconv.AppendQuote(b, string(text))
	b = append(b, `,"mentions":[{"id":"`...)
	b = append(b, other.id...)
	b = append(b, `","username":"`...)
	b = append(b, other.username...)
	b = append(b, `","offset":0,"length":`...)
	b = strconv.AppendInt(b, int64(len(other.username)+1), 10)
	b = append(b, `}],"reply_to":{"id":"msg_`...)
	b = r.base32(b, 26)
	b = append(b, `","author_id":"`...)
	b = append(b, other.id...)
	b = append(b, `","excerpt":`...)
	b = strconv.AppendQuote(b, excerpt(chatSentences[r.n(len(chatSentences))], 60))
	b = append(b, `},"attachments":[],"reactions":[`...)
	for i, n := 0, 1+r.n(3); i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"emoji":"`...)
		b = append(b, chatEmoji[r.n(len(chatEmoji))]...)
		b = append(b, `","count":`...)
		k := 1 + r.n(3)
		b = strconv.AppendInt(b, int64(k), 10)
		b = append(b, `,"user_ids":[`...)
		for j := range k {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, chatUsers[r.n(len(chatUsers))].id...)
			b = append(b, '"')
		}
		b = append(b, `]}`...)
	}
	b = append(b, `],"created_at":"`...)
	b = created.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, `","edited_at":null,"client_msg_id":"`...)
	b = r.uuid(b)
	b = append(b, `","read_by_count":`...)
	b = strconv.AppendInt(b, int64(r.n(12)), 10)
	b = append(b, `,"pinned":false,"silent":false,"version":1}`...)
	return b
}

// DeflateSaving is the share of bytes saved by compressing each frame
// payload on its own (raw DEFLATE at level, no shared context, the
// trailing 0x00 0x00 0xff 0xff dropped as RFC 7692 specifies): 1 −
// compressed/plain summed over frames.
func DeflateSaving(frames [][]byte, level int) float64 {
	var plain, packed int
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, level)
	if err != nil {
		return 0
	}
	for _, f := range frames {
		buf.Reset()
		w.Reset(&buf)
		w.Write(f)
		w.Flush()
		plain += len(f)
		packed += max(buf.Len()-4, 0)
	}
	if plain == 0 {
		return 0
	}
	return 1 - float64(packed)/float64(plain)
}

func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// pick is a small deterministic generator seeded by a sequence number.
type pick struct{ state uint64 }

func newPick(seq int64) *pick {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	return &pick{state: h.Sum64() | 1}
}

func (p *pick) next() uint64 { // xorshift64*
	p.state ^= p.state >> 12
	p.state ^= p.state << 25
	p.state ^= p.state >> 27
	return p.state * 2685821657736338717
}

func (p *pick) n(k int) int { return int(p.next() % uint64(k)) }

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func (p *pick) base32(b []byte, n int) []byte {
	for range n {
		b = append(b, crockford[p.next()%32])
	}
	return b
}

func (p *pick) hex(b []byte, n int) []byte {
	for range n {
		b = append(b, "0123456789abcdef"[p.next()%16])
	}
	return b
}

func (p *pick) uuid(b []byte) []byte {
	for i, n := range []int{8, 4, 4, 4, 12} {
		if i > 0 {
			b = append(b, '-')
		}
		b = p.hex(b, n)
	}
	return b
}

type chatUser struct{ id, username, name, role string }

var chatUsers = []chatUser{
	{"usr_4821", "mfernandes", "Maria Fernandes", "member"},
	{"usr_1193", "jkim", "Jae-won Kim", "admin"},
	{"usr_2207", "olu.adeyemi", "Oluwaseun Adeyemi", "member"},
	{"usr_3310", "sophie_b", "Sophie Bernard", "moderator"},
	{"usr_5092", "raj.patel", "Raj Patel", "member"},
	{"usr_6634", "lena.h", "Lena Hoffmann", "member"},
	{"usr_7718", "tomasz", "Tomasz Nowak", "guest"},
	{"usr_8045", "aiko.t", "Aiko Tanaka", "member"},
}

type chatRoom struct{ id, name string }

var chatRooms = []chatRoom{
	{"room_7f3a9c2e", "#deploys"},
	{"room_1b8e44d0", "#support-tier-2"},
	{"room_c02d9a71", "#design-review"},
	{"room_5e6f0b13", "#random"},
}

var chatEmoji = []string{"👍", "🎉", "👀", "🙏", "✅", "😂"}

var chatSentences = []string{
	"The rollout to eu-west finished at 14:02 and error rates are back under 0.1%, so I'm closing the incident channel.",
	"Can you take another look at the checkout flow on Safari? The address form still jumps when the keyboard opens.",
	"I pushed a fix for the flaky integration test; it was racing the cache warm-up, not the database migration.",
	"Customer says invoices from last Tuesday show the wrong VAT rate, I've asked for the order numbers to reproduce.",
	"Lunch is on the third floor today, the kitchen on five is being repainted until Friday.",
	"New mockups for the onboarding screens are in Figma, comments welcome before the review tomorrow at 10.",
	"Heads up: the staging database will be restored from last night's snapshot at 18:00, save anything you need.",
	"Thanks everyone for the quick turnaround on the release notes, marketing is sending them out this afternoon.",
	"Does anyone know why the nightly export job started taking forty minutes instead of twelve since Monday?",
	"I'll be offline from 3pm for a dentist appointment, ping me on my phone if the payment provider calls back.",
}
