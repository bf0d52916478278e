/*
 * lambda_async(function_arn, payload): the local stand-in for Aurora MySQL's native function.
 *
 * A MySQL loadable function ("UDF"), built by local/mysql.py with the machine's C compiler and installed with
 *   CREATE FUNCTION lambda_async RETURNS STRING SONAME 'fanout_lambda_async.so';
 * It is global (callable from every schema without a prefix, like Aurora's native function), touches no table
 * and takes no lock: each call opens a loopback connection to the bridge (local/lambda_async/bridge.py), hands
 * it the function ARN and the payload, and waits for the bridge's answer, which comes once the Lambda Invoke
 * API (InvocationType=Event) has accepted the call, as Aurora's call returns once Lambda has. So the call runs
 * inside the statement, before COMMIT, and a ROLLBACK cannot undo it.
 *
 * It fails as Aurora's does when Lambda cannot be reached: the statement gets an error ("Lambda API returned
 * error: ..."), raised with the server's my_printf_error (the documented error path of server code; a
 * loadable function's own *error flag only turns the result into NULL). The bridge also answers with an error
 * or after a set delay when a test or benchmark asks it to (Aurora's ~35 ms a call).
 *
 * Wire format (loopback only): "CALL <arn bytes> <payload bytes>\n" then the ARN and the payload; the answer
 * is one line, "OK <status>\n" or "ERR <message>\n".
 *
 * The loadable-function ABI is declared here as MySQL 8.0 documents it (mysql/udf_registration_types.h); the
 * server package from Maven Central ships no headers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum Item_result { INVALID_RESULT = -1, STRING_RESULT = 0, REAL_RESULT, INT_RESULT, ROW_RESULT, DECIMAL_RESULT };

typedef struct UDF_ARGS {
    unsigned int arg_count;
    enum Item_result *arg_type;
    char **args;
    unsigned long *lengths;
    char *maybe_null;
    char **attributes;
    unsigned long *attribute_lengths;
    void *extension;
} UDF_ARGS;

typedef struct UDF_INIT {
    _Bool maybe_null;
    unsigned int decimals;
    unsigned long max_length;
    char *ptr;
    _Bool const_item;
    void *extension;
} UDF_INIT;

/* void my_printf_error(uint error, const char *format, myf MyFlags, ...), exported by mysqld (C++ linkage). */
extern void my_printf_error(unsigned int error, const char *format, int flags, ...)
    __asm__("_Z15my_printf_errorjPKciz");

/* The code Aurora MySQL raises for a failed Lambda call ("Lambda API returned error: ..."). */
#define LAMBDA_ERROR 1873
#define ADDRESS_ENV "FANOUT_LAMBDA_ASYNC_ADDRESS"
#define DEFAULT_ADDRESS "127.0.0.1:4599"
#define TIMEOUT_SECONDS 30
#define ANSWER_MAX 1024

_Bool lambda_async_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
void lambda_async_deinit(UDF_INIT *initid);
char *lambda_async(UDF_INIT *initid, UDF_ARGS *args, char *result, unsigned long *length, unsigned char *is_null,
                   unsigned char *error);

_Bool lambda_async_init(UDF_INIT *initid, UDF_ARGS *args, char *message) {
    if (args->arg_count != 2) {
        snprintf(message, 512, "lambda_async(function_arn, payload) takes 2 arguments");
        return 1;
    }
    args->arg_type[0] = STRING_RESULT;
    args->arg_type[1] = STRING_RESULT;
    initid->maybe_null = 1;
    initid->max_length = 255;
    initid->const_item = 0;
    return 0;
}

void lambda_async_deinit(UDF_INIT *initid) { (void)initid; }

static int bridge_address(struct sockaddr_in *addr) {
    const char *text = getenv(ADDRESS_ENV);
    char host[64];
    const char *colon;
    size_t host_len;
    long port;
    if (text == NULL || *text == '\0') text = DEFAULT_ADDRESS;
    colon = strrchr(text, ':');
    if (colon == NULL) return -1;
    host_len = (size_t)(colon - text);
    if (host_len == 0 || host_len >= sizeof(host)) return -1;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535) return -1;
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((unsigned short)port);
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

/* `src` into `dst` (of `size` bytes), cut to fit, always terminated. */
static void copy_text(char *dst, size_t size, const char *src) {
    size_t len = strnlen(src, size - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static int send_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t sent = send(fd, data, size, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += sent;
        size -= (size_t)sent;
    }
    return 0;
}

/* One call to the bridge; on failure fills `problem` and returns -1, else copies the status into `status`. */
static int call_bridge(const char *arn, unsigned long arn_len, const char *payload, unsigned long payload_len,
                       char *status, size_t status_size, char *problem, size_t problem_size) {
    struct sockaddr_in addr;
    struct timeval timeout = {TIMEOUT_SECONDS, 0};
    char header[64];
    char answer[ANSWER_MAX];
    size_t got = 0;
    int one = 1;
    int fd;
    if (bridge_address(&addr) != 0) {
        snprintf(problem, problem_size, "Invalid endpoint in %s", ADDRESS_ENV);
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(problem, problem_size, "Network Connection. %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        snprintf(problem, problem_size, "Network Connection. Unable to connect to endpoint (%s)", strerror(errno));
        close(fd);
        return -1;
    }
    snprintf(header, sizeof(header), "CALL %lu %lu\n", arn_len, payload_len);
    if (send_all(fd, header, strlen(header)) != 0 || send_all(fd, arn, arn_len) != 0 ||
        send_all(fd, payload, payload_len) != 0) {
        snprintf(problem, problem_size, "Network Connection. %s", strerror(errno));
        close(fd);
        return -1;
    }
    while (got < sizeof(answer) - 1) {
        ssize_t n = recv(fd, answer + got, sizeof(answer) - 1 - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
        if (memchr(answer, '\n', got) != NULL) break;
    }
    close(fd);
    answer[got] = '\0';
    {
        char *newline = strchr(answer, '\n');
        if (newline == NULL) {
            snprintf(problem, problem_size, "Network Connection. No answer from the endpoint");
            return -1;
        }
        *newline = '\0';
    }
    if (strncmp(answer, "OK ", 3) == 0) {
        copy_text(status, status_size, answer + 3);
        return 0;
    }
    copy_text(problem, problem_size, strncmp(answer, "ERR ", 4) == 0 ? answer + 4 : answer);
    return -1;
}

char *lambda_async(UDF_INIT *initid, UDF_ARGS *args, char *result, unsigned long *length, unsigned char *is_null,
                   unsigned char *error) {
    char problem[512];
    (void)initid;
    if (args->args[0] == NULL || args->args[1] == NULL) {
        my_printf_error(LAMBDA_ERROR, "Lambda API returned error: Invalid Request. function_arn and payload "
                        "must not be NULL", 0);
        *error = 1;
        return NULL;
    }
    /* `result` has room for 255 bytes (the server's buffer for a loadable function's string result). */
    if (call_bridge(args->args[0], args->lengths[0], args->args[1], args->lengths[1], result, 255, problem,
                    sizeof(problem)) != 0) {
        my_printf_error(LAMBDA_ERROR, "Lambda API returned error: %s", 0, problem);
        *error = 1;
        return NULL;
    }
    *is_null = 0;
    *length = strlen(result);
    return result;
}
