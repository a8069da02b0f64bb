// Package media carries a call's audio: RTP sessions, SDP offer/answer,
// G.711, DTMF and WAV prompts. Each file implements the standard it names,
// citing the sections beside the code:
//
//   - g711.go: ITU-T G.711 µ-law and A-law, by precomputed tables.
//   - dtmf.go: RFC 4733 telephone-events, and DTMF carried in SIP INFO.
//   - sdp.go, sdpnormalize.go, negotiate.go, sdpbuild.go: RFC 4566 session
//     descriptions and the RFC 3264 offer/answer model, parsed and written
//     with pion/sdp.
//   - session.go, ports.go: RFC 3550 RTP and the RFC 3551 audio profile,
//     with symmetric RTP (RFC 4961) latching for callers behind NAT.
//   - playout.go, pacer.go: what a Session sends, a continuous stream of
//     20 ms packets from Start to Close (its playout queue's audio, a
//     digit's RFC 4733 events, or silence), paced for all Sessions by a
//     few shared goroutines.
//   - bridge.go: two Sessions relaying to each other, a back-to-back RTP
//     session (RFC 7667) with G.711 transcoding, for a call Switchback
//     stays in the middle of.
//   - wav.go, resample.go, recorder.go: RIFF WAVE prompts, resampled to
//     8 kHz, and recordings.
//
// All PCM is 8 kHz mono 16-bit linear in 20 ms frames (frame.go). The
// media path never blocks and never allocates per packet: a Session reuses
// its send and receive buffers, hands out received frames carved from
// slabs it allocates every 50 frames, queues audio to send in pooled
// blocks, bounds every queue and drops (and counts) what does not fit or
// is not taken in time, and paces what it sends against absolute
// deadlines.
package media
