/* msbx_shape.h - checking a send request against Meta's own examples.
 *
 * Meta's request schemas cannot validate Meta's own examples (see
 * shared/oracles/README.md: the Message oneOf/allOf/additionalProperties
 * construction rejects "Send Text Message"). The sandbox therefore takes the
 * official request examples (cloud_api_examples.json,
 * verbatim_from_spec.send_request_examples) as the definition of a valid
 * body, grouped by their top-level "type" (text, template, image, document,
 * interactive), and checks a request's key structure against them:
 *
 *   - the request's "type" must be one of the examples' types;
 *   - every object of the request must match one example object found at the
 *     same path in an example of that type ("pool"), where an object with a
 *     "type" member only matches example objects of the same "type" value
 *     (so a list's action is checked against the list example, a button
 *     component against the button components): it has every key of that
 *     example object (except the optional keys below) and no key that
 *     object lacks (except the optional keys);
 *   - arrays must not be empty where the examples' are not; each element is
 *     checked against every element found at that path in the examples;
 *   - scalars must have a JSON type seen at that path (number, string,
 *     boolean).
 * Matching against everything found at a path, not only inside the one
 * matched object, lets combinations Meta accepts but no single example
 * shows through (a template header with a text parameter, a list without
 * footer): the examples define the vocabulary, not every sentence.
 *
 * Optional keys: members the spec documents as optional (or that Meta's
 * send-message reference documents) but that some or all examples happen to
 * carry or lack. Each is listed with the path it may appear at:
 *   ""                                         biz_opaque_callback_data (string, <= 512)
 *   "text"                                     preview_url (TextMessage: no required members)
 *   "image", "document"                        caption (MediaObject: optional)
 *   "interactive"                              header, footer (InteractiveObject: optional)
 *   "interactive.action.sections[].rows[]"     description (SectionObject rows: optional)
 *   "template"                                 components (TemplateObject: optional)
 *
 * On top of the shape, values are checked where the examples cannot say it:
 * messaging_product "whatsapp", recipient_type "individual", `to` 1 to 15
 * digits, a non-empty template name and language code, text limits (body
 * 4096, interactive body 1024, button titles 20, rows 24, at most 3 buttons
 * and 10 rows), http(s) media links, biz_opaque_callback_data <= 512.
 *
 * Pure: no I/O besides msbx_examples_load reading its file. The examples
 * object is immutable after loading, so the HTTP threads share it. */
#ifndef MSBX_SHAPE_H
#define MSBX_SHAPE_H

#include <json-c/json.h>
#include <stddef.h>

#define MSBX_TYPES_MAX 16
#define MSBX_EXAMPLES_MAX 64

typedef struct msbx_examples {
    json_object *root;                  /* owned: the whole file */
    json_object *items[MSBX_EXAMPLES_MAX];/* borrowed from root: every send request example */
    const char *names[MSBX_EXAMPLES_MAX]; /* their names ("Send Text Message") */
    size_t n;
    const char *types[MSBX_TYPES_MAX];  /* distinct top-level "type" values, borrowed */
    size_t ntypes;
    json_object *success;               /* borrowed: send_success_response */
} msbx_examples_t;

/* Reads path (cloud_api_examples.json). 0, or -1 with the reason in errstr
 * (unreadable, not JSON, no send_request_examples, an example without a
 * string "type"). ex must be zeroed; free with msbx_examples_free. */
int msbx_examples_load(const char *path, msbx_examples_t *ex, char *errstr, size_t errlen);
/* The same from a parsed document (the reference is taken over). */
int msbx_examples_from_json(json_object *root, msbx_examples_t *ex, char *errstr, size_t errlen);
void msbx_examples_free(msbx_examples_t *ex);

/* Checks req (a parsed body, borrowed) as described above. Returns 0, or -1
 * with "<path>: reason" in errstr (e.g. "template.language: missing key
 * 'code'", "image: unknown key 'id2'"). */
int msbx_check(const msbx_examples_t *ex, json_object *req, char *errstr, size_t errlen);

#endif
