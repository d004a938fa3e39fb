// Typed wrappers for libcurl's variadic calls, which Swift cannot call directly.
// No logic lives here: each wrapper forwards one argument of one C type.
#ifndef ACS_GATEWAY_CCURL_SHIM_H
#define ACS_GATEWAY_CCURL_SHIM_H

#include <curl/curl.h>

// curl_easy_setopt with a `long` argument (CURLOPT_TIMEOUT_MS, CURLOPT_POSTFIELDSIZE, booleans…).
static inline CURLcode acsgw_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

// curl_easy_setopt with a string argument; libcurl copies strings it is given (CURLOPT_URL, CURLOPT_CAINFO…).
static inline CURLcode acsgw_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

// curl_easy_setopt with an opaque pointer (CURLOPT_PRIVATE, CURLOPT_WRITEDATA, CURLOPT_POSTFIELDS, CURLOPT_HTTPHEADER…).
static inline CURLcode acsgw_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

// The callback signatures the gateway installs, typed so Swift closures convert to them.
typedef size_t (*acsgw_curl_data_callback)(char *buffer, size_t size, size_t count, void *userdata);
static inline CURLcode acsgw_curl_easy_setopt_data_callback(CURL *handle, CURLoption option,
                                                            acsgw_curl_data_callback callback) {
    return curl_easy_setopt(handle, option, callback);
}

// The seek callback that lets libcurl rewind a request body it reads through CURLOPT_READFUNCTION, to send it
// again (on a fresh connection when a reused one turned out to be closed).
typedef int (*acsgw_curl_seek_callback)(void *userdata, curl_off_t offset, int origin);
static inline CURLcode acsgw_curl_easy_setopt_seek_callback(CURL *handle, acsgw_curl_seek_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, callback);
}

// curl_easy_setopt with a curl_off_t argument (CURLOPT_POSTFIELDSIZE_LARGE).
static inline CURLcode acsgw_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

// curl_easy_getinfo for `long` results (CURLINFO_RESPONSE_CODE, CURLINFO_HTTP_VERSION…).
static inline CURLcode acsgw_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

// curl_easy_getinfo for pointer results (CURLINFO_PRIVATE).
static inline CURLcode acsgw_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}

// curl_multi_setopt with a `long` argument (CURLMOPT_MAX_HOST_CONNECTIONS, CURLMOPT_PIPELINING…).
static inline CURLMcode acsgw_curl_multi_setopt_long(CURLM *multi, CURLMoption option, long value) {
    return curl_multi_setopt(multi, option, value);
}

// curl_multi_setopt with an opaque pointer (CURLMOPT_SOCKETDATA, CURLMOPT_TIMERDATA).
static inline CURLMcode acsgw_curl_multi_setopt_pointer(CURLM *multi, CURLMoption option, void *value) {
    return curl_multi_setopt(multi, option, value);
}

// The multi interface's socket and timer callbacks, which drive Dispatch sources.
typedef int (*acsgw_curl_socket_callback)(CURL *easy, curl_socket_t socket, int what, void *userp, void *socketp);
typedef int (*acsgw_curl_timer_callback)(CURLM *multi, long timeout_ms, void *userp);

static inline CURLMcode acsgw_curl_multi_setopt_socket_callback(CURLM *multi, acsgw_curl_socket_callback callback) {
    return curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, callback);
}

static inline CURLMcode acsgw_curl_multi_setopt_timer_callback(CURLM *multi, acsgw_curl_timer_callback callback) {
    return curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, callback);
}

// curl_version_info for the headers' own version (CURLVERSION_NOW is a macro Swift does not import).
static inline curl_version_info_data *acsgw_curl_version_info(void) {
    return curl_version_info(CURLVERSION_NOW);
}

// The finished transfer and its result from a CURLMsg (the union is awkward to reach from Swift).
static inline CURL *acsgw_curl_msg_done_handle(CURLMsg *message, CURLcode *result) {
    if (message == NULL || message->msg != CURLMSG_DONE) return NULL;
    *result = message->data.result;
    return message->easy_handle;
}

#endif
