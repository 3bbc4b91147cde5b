#pragma once
// Blocking-socket helpers shared by the client and the server of this module.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace factory::net::internal {

// Sends every byte of `parts` with sendmsg (MSG_NOSIGNAL: a closed peer is an error, not a
// SIGPIPE), one call when the socket buffer takes it all, continuing after partial sends.
// Rewrites `parts` as it goes. False on an error (errno says which; EAGAIN: SO_SNDTIMEO expired).
bool SendAll(int fd, iovec* parts, size_t count);

// SO_RCVTIMEO or SO_SNDTIMEO (`option`) in milliseconds; 0 = wait forever.
void SetSocketTimeout(int fd, int option, int64_t timeout_ms);

}  // namespace factory::net::internal
