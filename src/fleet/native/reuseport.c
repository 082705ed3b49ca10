// Opens the listening sockets of a sharded server (server.workers > 1): N sockets on one address
// and port with SO_REUSEPORT, and a classic BPF program that makes the kernel hand every packet
// (UDP) or connection (TCP) to socket hash(source address) % N. So one client address always
// reaches the same worker, and that worker sees all of its session's queries. Node 20's dgram and
// net cannot set SO_REUSEPORT or attach a filter; everything else stays in JavaScript.
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

// The steering program. The kernel runs it with the packet positioned past the transport header,
// so the source address is read relative to the network header (SKF_NET_OFF). IPv4: the source
// word; IPv6: the XOR of its four words. Then a 32-bit mix (the same as shardOf() in
// src/shard.ts, which tests and the benchmark use to predict the worker) and modulo N.
static int attach_steering(int fd, unsigned int shards) {
  struct sock_filter code[] = {
    /* 0 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF + 0),
    /* 1 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 4),
    /* 2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 2),
    /* 3 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 12),
    /* 4 */ BPF_JUMP(BPF_JMP | BPF_JA, 10, 0, 0),
    /* 5 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 8),
    /* 6 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
    /* 7 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 12),
    /* 8 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
    /* 9 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
    /* 10 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 16),
    /* 11 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
    /* 12 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
    /* 13 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_NET_OFF + 20),
    /* 14 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
    /* 15: mix */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
    /* 16 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
    /* 17 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
    /* 18 */ BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x45d9f3b),
    /* 19 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
    /* 20 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16),
    /* 21 */ BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0),
    /* 22 */ BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, shards),
    /* 23 */ BPF_STMT(BPF_RET | BPF_A, 0),
  };
  struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog));
}

// Binds a socket without SO_REUSEPORT to addr:port and closes it again: fails (EADDRINUSE) if anything
// holds the port. Without it a second dnswarden running as the same user would silently join the first
// one's reuseport group and take a share of its clients. With port 0 it picks the port for the group.
static int probe_free(int family, int tcp, struct sockaddr_storage *ss, socklen_t sslen, uint32_t *port) {
  int fd = socket(family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  int ok = (!tcp || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0) &&
           (family != AF_INET6 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0);
  if (family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons(*port);
  else ((struct sockaddr_in6 *)ss)->sin6_port = htons(*port);
  ok = ok && bind(fd, (struct sockaddr *)ss, sslen) == 0;
  if (ok && *port == 0) {
    struct sockaddr_storage got;
    socklen_t gotlen = sizeof got;
    ok = getsockname(fd, (struct sockaddr *)&got, &gotlen) == 0;
    if (ok) *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port : ((struct sockaddr_in6 *)&got)->sin6_port);
  }
  int err = errno;
  close(fd);
  errno = err;
  return ok ? 0 : -1;
}

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == EADDRINUSE ? "EADDRINUSE" : "ERR_REUSEPORT", msg);
  return NULL;
}

// openGroup(kind: 'udp'|'tcp', host: string, port: number, shards: number, backlog: number)
//   -> { fds: number[], port: number }
// The sockets join the reuseport group in array order, which is the order the program indexes.
static napi_value open_group(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 5) { napi_throw_type_error(env, NULL, "openGroup(kind, host, port, shards, backlog)"); return NULL; }
  char kind[8] = {0}, host[64] = {0};
  size_t len;
  uint32_t port, shards, backlog;
  if (napi_get_value_string_utf8(env, argv[0], kind, sizeof kind, &len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], host, sizeof host, &len) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &port) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &shards) != napi_ok ||
      napi_get_value_uint32(env, argv[4], &backlog) != napi_ok || port > 65535 || shards < 1 || shards > 256) {
    napi_throw_type_error(env, NULL, "openGroup(kind 'udp'|'tcp', host, port 0-65535, shards 1-256, backlog)");
    return NULL;
  }
  int tcp = strcmp(kind, "tcp") == 0;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sslen;
  int family;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    family = AF_INET; v4->sin_family = AF_INET; sslen = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    family = AF_INET6; v6->sin6_family = AF_INET6; sslen = sizeof *v6;
  } else {
    napi_throw_type_error(env, NULL, "host must be an IPv4 or IPv6 literal");
    return NULL;
  }
  int fds[256];
  unsigned int opened = 0;
  uint32_t bound_port = port;
  if (probe_free(family, tcp, &ss, sslen, &bound_port) < 0) goto error;
  for (; opened < shards; opened++) {
    int fd = socket(family, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) goto error;
    fds[opened] = fd;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) { opened++; goto error; }
    if (tcp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) { opened++; goto error; }
    if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) { opened++; goto error; }
    if (family == AF_INET) v4->sin_port = htons(bound_port); else v6->sin6_port = htons(bound_port);
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) { opened++; goto error; }
    if (opened == 0 && attach_steering(fd, shards) < 0) { opened++; goto error; }
    if (tcp && listen(fd, (int)backlog) < 0) { opened++; goto error; }
  }
  napi_value result, list, value;
  napi_create_object(env, &result);
  napi_create_array_with_length(env, shards, &list);
  for (unsigned int i = 0; i < shards; i++) {
    napi_create_int32(env, fds[i], &value);
    napi_set_element(env, list, i, value);
  }
  napi_set_named_property(env, result, "fds", list);
  napi_create_uint32(env, bound_port, &value);
  napi_set_named_property(env, result, "port", value);
  return result;

error: {
    int err = errno;
    for (unsigned int i = 0; i < opened; i++) close(fds[i]);
    return fail(env, tcp ? "tcp reuseport group" : "udp reuseport group", err);
  }
}

// closeFd(fd): the supervisor's copy of a socket, at shutdown.
static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) { napi_throw_type_error(env, NULL, "closeFd(fd)"); return NULL; }
  close(fd);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "openGroup", NAPI_AUTO_LENGTH, open_group, NULL, &fn);
  napi_set_named_property(env, exports, "openGroup", fn);
  napi_create_function(env, "closeFd", NAPI_AUTO_LENGTH, close_fd, NULL, &fn);
  napi_set_named_property(env, exports, "closeFd", fn);
  return exports;
}
