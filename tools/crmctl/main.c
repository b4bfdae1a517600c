/* crmctl - operator CLI: migrations, topics, template preview, the embedded
 * development fleet. main() only dispatches to a subcommand family. */
#include <stdio.h>
#include <string.h>

#include "crmctl.h"

typedef struct crmctl_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} crmctl_command_t;

static const crmctl_command_t commands[] = {
    {"template", crmctl_template_main, "template render --template FILE --data FILE.json [--partials DIR]"},
    {"migrate", crmctl_migrate_main, "migrate [--dir DIR]   apply numbered SQL migrations to DATABASE_URL"},
    {"dev", crmctl_dev_main, "dev up | down | status   the embedded development fleet under var/dev"},
    {"embedded-kafka", crmctl_kafka_main, "embedded-kafka [--brokers N] [--bootstrap-file F] [--control-port N]   run librdkafka's mock cluster"},
    {"topics", crmctl_topics_main, "topics create [--fix] | list   create and check the engine's topics on KAFKA_BROKERS"},
    {"dlq", crmctl_dlq_main, "dlq list | replay [--since T] [--reason R] [--source-topic T]   inspect and re-inject dead letters"},
    {"conversations", crmctl_conversations_main, "conversations set --tenant T --phone +E164 --last-inbound RFC3339|now   open/close a WhatsApp window"},
    {"test-email", crmctl_test_email_main, "test-email --to ADDR [--subject S] [--text T]   send one email through the SMTP_* settings"},
    {"test-sms", crmctl_test_sms_main, "test-sms --to +E164 [--body TEXT]   send one SMS through the TWILIO_* settings"},
    {"test-whatsapp", crmctl_test_whatsapp_main, "test-whatsapp --to +E164 [--text T | --template NAME --language CODE]   send one WhatsApp message"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: crmctl <command> [args]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %s\n", commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "crmctl: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
