/* calib.h - calibration data for codecs that need fitted statistics (PCA bases, steps):
 * a versioned file (GGUF container) that names the model it belongs to. The codec table
 * sees it only as `const struct kvc_calib *` in kv_slot_info. */
#ifndef KVC_CALIB_H
#define KVC_CALIB_H

#include "kvcodec.h"

struct kvc_calib;
struct kvc_model;

/* Load and validate path against model m (architecture shape and tokenizer must match the
 * model the file was made from): KVC_ERR_IO / KVC_ERR_FORMAT / KVC_ERR_CALIB with a message
 * naming the file, the field and the expected value. */
kvc_status kvc_calib_load(const char *path, const struct kvc_model *m, struct kvc_calib **out,
                          kvc_error *err);
void kvc_calib_free(struct kvc_calib *c); /* NULL is a no-op */

#endif
