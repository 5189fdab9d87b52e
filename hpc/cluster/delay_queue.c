/* delay_queue: hold every packet of one NFQUEUE for a fixed time, then
 * accept it, in arrival order (issue 28: this kernel has no netem).
 *
 *   delay_queue QUEUE_NUM DELAY_US
 *
 * Run inside a node's namespace, after
 *   iptables-legacy -A INPUT -i eth0 -j NFQUEUE --queue-num QUEUE_NUM
 * Each packet's verdict is given DELAY_US after it reached the queue: every
 * packet into the node arrives DELAY_US late (one-way latency); the links'
 * tbf still sets the rate. On arrival, not departure: a packet held on the
 * sender still counts against its socket (TCP small queues). Only metadata
 * is copied to user space.
 * Built by grappa.emulated_cluster with: cc -O2 -o delay_queue delay_queue.c -lnetfilter_queue
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define RING (1 << 20) /* packets held at once; at 100 Mbit/s and 20 ms about 200 are */

static uint32_t ids[RING];
static int64_t due[RING];
static size_t head, tail; /* held packets are ids[head..tail) mod RING */
static int64_t delay_ns;
static volatile sig_atomic_t stopping;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int on_packet(struct nfq_q_handle *q, struct nfgenmsg *m, struct nfq_data *d, void *arg) {
    struct nfqnl_msg_packet_hdr *h = nfq_get_msg_packet_hdr(d);
    uint32_t id = ntohl(h->packet_id);
    if (tail - head == RING) /* full: let it through now rather than drop it */
        return nfq_set_verdict(q, id, NF_ACCEPT, 0, NULL);
    ids[tail % RING] = id;
    due[tail % RING] = now_ns() + delay_ns;
    tail++;
    return 0;
}

static void release_due(struct nfq_q_handle *q) {
    int64_t t = now_ns();
    while (head != tail && due[head % RING] <= t) {
        nfq_set_verdict(q, ids[head % RING], NF_ACCEPT, 0, NULL);
        head++;
    }
}

static void stop(int sig) { stopping = 1; }

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: delay_queue QUEUE_NUM DELAY_US\n");
        return 2;
    }
    delay_ns = (int64_t)(atof(argv[2]) * 1000.0);
    struct nfq_handle *h = nfq_open();
    if (!h) { perror("nfq_open"); return 1; }
    struct nfq_q_handle *q = nfq_create_queue(h, (uint16_t)atoi(argv[1]), on_packet, NULL);
    if (!q) { perror("nfq_create_queue"); return 1; }
    if (nfq_set_mode(q, NFQNL_COPY_META, 0) < 0) { perror("nfq_set_mode"); return 1; }
    nfq_set_queue_maxlen(q, RING);
    int fd = nfq_fd(h);
    int big = 16 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    printf("ready\n");
    fflush(stdout);
    char buf[4096] __attribute__((aligned));
    while (!stopping) {
        struct timespec wait, *waitp = NULL; /* nothing held: sleep until a packet comes */
        if (head != tail) {
            int64_t left = due[head % RING] - now_ns();
            left = left < 0 ? 0 : left;
            wait.tv_sec = left / 1000000000;
            wait.tv_nsec = left % 1000000000;
            waitp = &wait;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (ppoll(&p, 1, waitp, NULL) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            while (n > 0) {
                nfq_handle_packet(h, buf, (int)n);
                n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            }
            if (n < 0 && errno == ENOBUFS)
                fprintf(stderr, "delay_queue: the kernel dropped queue messages (ENOBUFS)\n");
        }
        release_due(q);
    }
    while (head != tail) { /* stopping: let the held packets go */
        nfq_set_verdict(q, ids[head % RING], NF_ACCEPT, 0, NULL);
        head++;
    }
    nfq_destroy_queue(q);
    nfq_close(h);
    return 0;
}
