/* crmctl.h - the operator CLI's subcommand families.
 *
 * Each family parses its own arguments (argv[0] is the family name) and
 * returns the process exit code: 0 success, 1 operational failure, 2 usage. */
#ifndef CRMCTL_H
#define CRMCTL_H

int crmctl_template_main(int argc, char **argv); /* crmctl_template.c: template render */
int crmctl_migrate_main(int argc, char **argv);  /* crmctl_migrate.c: migrate [--dir DIR] */
int crmctl_dev_main(int argc, char **argv);      /* crmctl_dev.c: dev up | dev down | dev status */
int crmctl_kafka_main(int argc, char **argv);    /* crmctl_kafka.c: embedded-kafka (runs the mock cluster) */
int crmctl_topics_main(int argc, char **argv);   /* crmctl_kafka.c: topics create | topics list */
int crmctl_dlq_main(int argc, char **argv);      /* crmctl_dlq.c: dlq list | dlq replay */
int crmctl_conversations_main(int argc, char **argv); /* crmctl_conversations.c: conversations set */
int crmctl_test_email_main(int argc, char **argv);    /* crmctl_testsend.c: test-email */
int crmctl_test_sms_main(int argc, char **argv);      /* crmctl_testsend.c: test-sms */
int crmctl_test_whatsapp_main(int argc, char **argv); /* crmctl_testsend.c: test-whatsapp */

#endif
