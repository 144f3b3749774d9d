/* C tests of a cluster's metrics and status: meshcache_cluster_metrics_text,
 * meshcache_cluster_status_json, and meshcache_cluster_options_set_metrics_listen serving
 * them over HTTP (read here with a plain socket), at meshcache_cluster_metrics_addr.
 * Built and run like test_meshcache.c by `make test-c` (mk/c.mk): with -std=c11 -Wall
 * -Wextra -Werror -pedantic, natively and under valgrind. Nothing sleeps: every wait is
 * on an answer, bounded by BOUND_MS (a socket timeout). */
#include "test_common.h"

#include <errno.h>

/* The value of the one `meshcache_gets_total{group="<group>",result="<result>"}` sample
 * of a text exposition, or -1 if there is not exactly one. */
static long long gets_total(const char *text, const char *group, const char *result) {
  char line[256];
  int n = snprintf(line, sizeof line, "\nmeshcache_gets_total{group=\"%s\",result=\"%s\"} ",
                   group, result);
  const char *at = strstr(text, line);
  if (at == NULL || strstr(at + 1, line) != NULL) return -1;
  char *end = NULL;
  long long v = strtoll(at + n, &end, 10);
  return (end != at + n && *end == '\n') ? v : -1;
}

/* The number `"key":<n>` of the JSON object at `obj` (its `{`) itself, not of an object
 * nested in it (a group's `hits`, not its `main` tier's), or -1 if there is none. */
static long long json_number(const char *obj, const char *key) {
  size_t klen = strlen(key);
  int depth = 0;
  for (const char *p = obj; *p != 0; p++) {
    if (*p == '{' || *p == '[') depth++;
    if (*p == '}' || *p == ']') {
      if (--depth == 0) return -1;
    }
    if (*p != '"') continue;
    const char *s = p + 1; /* a string: a key if `:` follows */
    for (p = s; *p != 0 && *p != '"'; p++)
      if (*p == '\\' && p[1] != 0) p++;
    if (*p == 0) return -1;
    if (depth == 1 && p[1] == ':' && (size_t)(p - s) == klen && memcmp(s, key, klen) == 0) {
      char *end = NULL;
      long long v = strtoll(p + 2, &end, 10);
      return end != p + 2 ? v : -1;
    }
  }
  return -1;
}

/* The first group of a status JSON (its `{`), or NULL. */
static const char *first_group(const char *json) {
  const char *at = strstr(json, "\"groups\":[");
  return at != NULL ? strchr(at, '{') : NULL;
}

/* A cluster with `o` (then freed; NULL for the defaults) and a group "g" with the
 * counting loader `l`, read 3 times over 10 keys: 10 loads, 20 hits. 0 on failure. */
static int busy_node(meshcache_cluster_options *o, counting_loader *l, meshcache_cluster **c,
                     meshcache_group **g) {
  meshcache_group_options *go = NULL;
  meshcache_result rc = meshcache_cluster_new(o, c);
  meshcache_cluster_options_free(o);
  if (rc != MESHCACHE_OK || meshcache_group_options_new(&go) != MESHCACHE_OK) return 0;
  meshcache_group_options_set_loader(go, count_loader, l, NULL);
  rc = meshcache_group_new(*c, "g", go, g);
  meshcache_group_options_free(go);
  if (rc != MESHCACHE_OK) return 0;
  char key[16], want[24];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 10; i++) {
      meshcache_value v = {0};
      snprintf(key, sizeof key, "mkey-%d", i);
      snprintf(want, sizeof want, "v:%s", key);
      rc = meshcache_group_get(*g, K(key), &v);
      int ok = rc == MESHCACHE_OK && value_is(&v, want);
      meshcache_value_free(&v);
      if (!ok) return 0;
    }
  }
  meshcache_group_stats s;
  return meshcache_group_stats_get(*g, &s) == MESHCACHE_OK && s.loads == 10 && s.hits == 20;
}

/* ---- a plain HTTP client ------------------------------------------------------------ */

/* A TCP connection to `addr` ("a.b.c.d:port"), with BOUND_MS send and receive timeouts:
 * the socket, or -1 (errno says why: ECONNREFUSED for a closed port). */
static int dial(const char *addr) {
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
    errno = EINVAL;
    return -1;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = 0;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    errno = EINVAL;
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {BOUND_MS / 1000, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* `GET http://addr/path` with HTTP/1.1 and `Connection: close`: the status code (-1 if
 * there is no answer), and the body in `*body` (malloc'd, NUL-terminated; free it)
 * when `body` is not NULL. */
static int http_get(const char *addr, const char *path, char **body) {
  if (body != NULL) *body = NULL;
  int fd = dial(addr);
  if (fd < 0) return -1;
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                   path, addr);
  if (send(fd, req, (size_t)n, 0) != n) {
    close(fd);
    return -1;
  }
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) break;
    if (cap - len < 1024) {
      char *bigger = realloc(buf, cap * 2);
      if (bigger == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
      cap *= 2;
    }
    ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
    if (got < 0) { /* a timeout: no answer */
      free(buf);
      buf = NULL;
      break;
    }
    if (got == 0) break; /* the server closed: the whole answer is in */
    len += (size_t)got;
  }
  close(fd);
  if (buf == NULL) return -1;
  buf[len] = 0;
  int status = -1;
  const char *end = strstr(buf, "\r\n\r\n");
  if (strncmp(buf, "HTTP/1.1 ", 9) == 0 && end != NULL) status = atoi(buf + 9);
  if (body != NULL && end != NULL) {
    size_t blen = len - (size_t)(end + 4 - buf);
    *body = malloc(blen + 1);
    if (*body != NULL) {
      memcpy(*body, end + 4, blen);
      (*body)[blen] = 0;
    }
  }
  free(buf);
  return status;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_metrics_text_counts_the_groups_hits(void) {
  counting_loader l = {0};
  meshcache_cluster *c = NULL;
  meshcache_group *g = NULL;
  CHECK(busy_node(NULL, &l, &c, &g));
  char addr[64] = "untouched";
  size_t addr_len = 99;
  /* no server without metrics_listen: nothing written */
  CHECK_RC(meshcache_cluster_metrics_addr(c, addr, sizeof addr, &addr_len), MESHCACHE_NOT_FOUND);
  CHECK(strcmp(addr, "untouched") == 0 && addr_len == 99);
  CHECK(strstr(meshcache_last_error_message(), "metrics") != NULL);

  char *text = NULL;
  size_t len = 0;
  OK(meshcache_cluster_metrics_text(c, &text, &len));
  CHECK(text != NULL && len == strlen(text));
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(g, &s));
  CHECK(gets_total(text, "g", "hit") == (long long)s.hits && s.hits == 20);
  CHECK(gets_total(text, "g", "load") == (long long)s.loads && s.loads == 10);
  CHECK(strstr(text, "# TYPE meshcache_gets counter\n") != NULL);
  CHECK(strstr(text, "\nmeshcache_ring_members 1\n") != NULL);
  CHECK(strstr(text, "mkey") == NULL); /* no key in any label */
  /* the caller's to modify in place: split it into lines, then free it all */
  int lines = 0;
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) lines++;
  CHECK(lines > 10);
  meshcache_string_free(text);

  /* read at call time: one more hit, a higher counter; out_len may be NULL */
  meshcache_value v = {0};
  OK(meshcache_group_get(g, K("mkey-0"), &v));
  meshcache_value_free(&v);
  OK(meshcache_cluster_metrics_text(c, &text, NULL));
  OK(meshcache_group_stats_get(g, &s));
  long long hits = gets_total(text, "g", "hit");
  meshcache_string_free(text);
  CHECK(hits == (long long)s.hits && s.hits == 21);

  meshcache_group_free(g);
  meshcache_cluster_free(c);
}

static void test_status_json_is_the_nodes_status(void) {
  counting_loader l = {0};
  meshcache_cluster *c = NULL;
  meshcache_group *g = NULL;
  CHECK(busy_node(NULL, &l, &c, &g));
  char addr[64], want[128];
  size_t addr_len = 0, len = 0;
  OK(meshcache_cluster_advertise_addr(c, addr, sizeof addr, &addr_len));
  char *json = NULL;
  OK(meshcache_cluster_status_json(c, &json, &len));
  CHECK(json != NULL && len == strlen(json) && json[0] == '{' && json[len - 1] == '}');
  snprintf(want, sizeof want, "\"node\":\"%s\"", addr);
  int node = strstr(json, want) != NULL;
  snprintf(want, sizeof want, "\"members\":[{\"addr\":\"%s\",\"share\":1.0}]", addr);
  int members = strstr(json, want) != NULL;
  int source = strstr(json, "\"source\":\"static\"") != NULL;
  int peers = strstr(json, "\"peers\":[]") != NULL;
  const char *g0 = first_group(json);
  int group = g0 != NULL && strstr(g0, "\"name\":\"g\"") != NULL && json_number(g0, "hits") == 20 &&
              json_number(g0, "loads") == 10 && json_number(g0, "gets") == 30;
  int one_line = strchr(json, '\n') == NULL;
  if (!(node && members && source && peers && group && one_line)) fprintf(stderr, "  %s\n", json);
  meshcache_string_free(json);
  CHECK(node && members && source && peers && group && one_line);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
}

static void test_metrics_listen_serves_metrics_health_and_status_over_http(void) {
  meshcache_cluster_options *o = NULL;
  OK(meshcache_cluster_options_new(&o));
  OK(meshcache_cluster_options_set_listen(o, "127.0.0.1:0"));
  OK(meshcache_cluster_options_set_metrics_listen(o, "127.0.0.1:0"));
  counting_loader l = {0};
  meshcache_cluster *c = NULL;
  meshcache_group *g = NULL;
  CHECK(busy_node(o, &l, &c, &g));

  char addr[64], peer_addr[64], small[8] = "x";
  size_t len = 0, peer_len = 0;
  CHECK_RC(meshcache_cluster_metrics_addr(c, small, sizeof small, &len), MESHCACHE_INSUFFICIENT_SIZE);
  CHECK(small[0] == 'x');
  OK(meshcache_cluster_metrics_addr(c, addr, sizeof addr, &len));
  OK(meshcache_cluster_local_addr(c, peer_addr, sizeof peer_addr, &peer_len));
  printf("     metrics at http://%s/metrics (peers at %s)\n", addr, peer_addr);
  CHECK(len == strlen(addr) && strncmp(addr, "127.0.0.1:", 10) == 0);
  CHECK(atoi(addr + 10) > 0);                /* port 0 picked a real port */
  CHECK(strcmp(addr, peer_addr) != 0);       /* a port of its own */

  char *body = NULL;
  int status = http_get(addr, "/metrics", &body);
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(g, &s));
  long long hits = body != NULL ? gets_total(body, "g", "hit") : -1;
  free(body);
  CHECK(status == 200);
  CHECK(hits == (long long)s.hits && s.hits == 20);
  CHECK(http_get(addr, "/healthz", NULL) == 200);
  CHECK(http_get(addr, "/readyz", NULL) == 200);
  status = http_get(addr, "/v1/status", &body);
  int groups = body != NULL && first_group(body) != NULL && json_number(first_group(body), "hits") == 20;
  free(body);
  CHECK(status == 200 && groups);
  status = http_get(addr, "/", &body);
  int page = body != NULL && strstr(body, "<html") != NULL;
  free(body);
  CHECK(status == 200 && page);
  CHECK(http_get(addr, "/nope", NULL) == 404);

  /* shut down: no server any more, but the text is still there */
  OK(meshcache_cluster_shutdown(c));
  char after[64] = "untouched";
  CHECK_RC(meshcache_cluster_metrics_addr(c, after, sizeof after, &len), MESHCACHE_NOT_FOUND);
  CHECK(strcmp(after, "untouched") == 0);
  char *text = NULL;
  OK(meshcache_cluster_metrics_text(c, &text, NULL));
  int members = strstr(text, "meshcache_ring_members") != NULL;
  meshcache_string_free(text);
  CHECK(members);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  /* freed (every thread of the cluster joined): its metrics port refuses connections */
  errno = 0;
  int fd = dial(addr);
  int refused = fd < 0 && errno == ECONNREFUSED;
  if (fd >= 0) close(fd);
  CHECK(refused);
}

static void test_bad_metrics_addresses_are_refused(void) {
  const meshcache_result INV = MESHCACHE_INVALID_ARGUMENT;
  meshcache_cluster_options *o = NULL;
  meshcache_cluster *c = NULL;
  CHECK_RC(meshcache_cluster_options_set_metrics_listen(NULL, "127.0.0.1:0"), INV);
  OK(meshcache_cluster_options_new(&o));
  CHECK_RC(meshcache_cluster_options_set_metrics_listen(o, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_metrics_listen(o, "\xff:0"), INV); /* not UTF-8 */
  meshcache_cluster_options_free(o);

  /* never a name to look up: no port, a port that is not one, an address not ours */
  const char *bad[] = {"nope", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", "192.0.2.1:0", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    OK(meshcache_cluster_options_new(&o));
    OK(meshcache_cluster_options_set_metrics_listen(o, bad[i])); /* recorded, checked by _new */
    meshcache_result rc = meshcache_cluster_new(o, &c);
    meshcache_cluster_options_free(o);
    if (rc != INV) fprintf(stderr, "  metrics_listen \"%s\"\n", bad[i]);
    CHECK_RC(rc, INV);
    CHECK(c == NULL);
    CHECK(strstr(meshcache_last_error_message(), "metrics") != NULL);
  }

  /* a port already taken: refused too, naming the address */
  int taken = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(taken >= 0);
  struct sockaddr_in sa;
  socklen_t sa_len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int bound = bind(taken, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(taken, 1) == 0 &&
              getsockname(taken, (struct sockaddr *)&sa, &sa_len) == 0;
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", (int)ntohs(sa.sin_port));
  OK(meshcache_cluster_options_new(&o));
  OK(meshcache_cluster_options_set_metrics_listen(o, addr));
  meshcache_result rc = meshcache_cluster_new(o, &c);
  meshcache_cluster_options_free(o);
  int named = strstr(meshcache_last_error_message(), addr) != NULL;
  close(taken);
  CHECK(bound);
  CHECK_RC(rc, INV);
  CHECK(c == NULL && named);
}

static void test_null_arguments(void) {
  const meshcache_result INV = MESHCACHE_INVALID_ARGUMENT;
  meshcache_cluster *c = NULL;
  OK(meshcache_cluster_new(NULL, &c));
  char buf[64] = "untouched", *text = NULL;
  size_t len = 0;
  CHECK_RC(meshcache_cluster_metrics_addr(NULL, buf, sizeof buf, &len), INV);
  CHECK_RC(meshcache_cluster_metrics_addr(c, NULL, sizeof buf, &len), INV);
  CHECK_RC(meshcache_cluster_metrics_addr(c, buf, sizeof buf, NULL), INV);
  CHECK_RC(meshcache_cluster_metrics_text(NULL, &text, &len), INV);
  CHECK_RC(meshcache_cluster_metrics_text(c, NULL, &len), INV);
  CHECK_RC(meshcache_cluster_status_json(NULL, &text, &len), INV);
  CHECK_RC(meshcache_cluster_status_json(c, NULL, &len), INV);
  CHECK(text == NULL && strcmp(buf, "untouched") == 0);
  meshcache_string_free(NULL); /* does nothing */
  /* out_len may be NULL */
  OK(meshcache_cluster_status_json(c, &text, NULL));
  CHECK(text != NULL);
  meshcache_string_free(text);
  meshcache_cluster_free(c);
}

/* ---- runner ----------------------------------------------------------------------- */

static const test_case TESTS[] = {
    T(test_metrics_text_counts_the_groups_hits),
    T(test_status_json_is_the_nodes_status),
    T(test_metrics_listen_serves_metrics_health_and_status_over_http),
    T(test_bad_metrics_addresses_are_refused),
    T(test_null_arguments),
};

int main(int argc, char **argv) {
  return run_tests(TESTS, sizeof TESTS / sizeof TESTS[0], argc, argv);
}
