// phone.cc - the C API of crm/phone.h over libphonenumber's C++ API.
//
// The shim is kept thin on purpose: every decision about numbers is
// libphonenumber's (it carries the numbering plans of every country, which
// we could never maintain), and this file only validates the input shape,
// maps the enums, and makes sure no C++ exception crosses into C.
#include "crm/phone.h"

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string>

extern "C" {
#include "crm/err.h"
}

namespace {

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

// Long enough for 15 digits with generous formatting; longer input is not
// a phone number and is refused before it reaches the parser.
constexpr size_t kMaxInput = 64;

// '+' then digits, with blanks and the usual separators between them.
// libphonenumber itself would also accept letters (vanity numbers),
// extensions and national formats, none of which belongs in an E.164 field.
bool shape_ok(const char *text)
{
    size_t len = std::strlen(text);
    if (len < 2 || len > kMaxInput || text[0] != '+')
        return false;
    int digits = 0;
    for (size_t i = 1; i < len; i++) {
        char c = text[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')')
            return false;
    }
    return digits >= 1 && digits <= 15;
}

cmn_phone_type_t map_type(PhoneNumberUtil::PhoneNumberType t)
{
    switch (t) {
    case PhoneNumberUtil::FIXED_LINE:
        return CMN_PHONE_FIXED_LINE;
    case PhoneNumberUtil::MOBILE:
        return CMN_PHONE_MOBILE;
    case PhoneNumberUtil::FIXED_LINE_OR_MOBILE:
        return CMN_PHONE_FIXED_LINE_OR_MOBILE;
    case PhoneNumberUtil::TOLL_FREE:
        return CMN_PHONE_TOLL_FREE;
    case PhoneNumberUtil::PREMIUM_RATE:
        return CMN_PHONE_PREMIUM_RATE;
    case PhoneNumberUtil::SHARED_COST:
        return CMN_PHONE_SHARED_COST;
    case PhoneNumberUtil::VOIP:
        return CMN_PHONE_VOIP;
    case PhoneNumberUtil::PERSONAL_NUMBER:
        return CMN_PHONE_PERSONAL_NUMBER;
    case PhoneNumberUtil::PAGER:
        return CMN_PHONE_PAGER;
    case PhoneNumberUtil::UAN:
        return CMN_PHONE_UAN;
    case PhoneNumberUtil::VOICEMAIL:
        return CMN_PHONE_VOICEMAIL;
    case PhoneNumberUtil::UNKNOWN:
        return CMN_PHONE_UNKNOWN;
    }
    return CMN_PHONE_UNKNOWN;
}

int check(const char *text, cmn_phone_info_t *out)
{
    if (!shape_ok(text))
        return CMN_ERR_INVALID;
    const PhoneNumberUtil *util = PhoneNumberUtil::GetInstance();
    PhoneNumber number;
    // "ZZ" (unknown region): only an international number with its '+'
    // parses, which is exactly the E.164 contract.
    if (util->Parse(text, "ZZ", &number) != PhoneNumberUtil::NO_PARSING_ERROR)
        return CMN_ERR_INVALID;
    if (number.has_extension())
        return CMN_ERR_INVALID;
    out->country_code = number.country_code();
    std::string region;
    util->GetRegionCodeForNumber(number, &region);
    if (region.size() == 2)
        std::memcpy(out->region, region.c_str(), 3);
    if (!util->IsValidNumber(number))
        return CMN_ERR_INVALID;
    std::string e164;
    util->Format(number, PhoneNumberUtil::E164, &e164);
    if (e164.size() >= sizeof out->e164)
        return CMN_ERR_INVALID;
    std::memcpy(out->e164, e164.c_str(), e164.size() + 1);
    out->type = map_type(util->GetNumberType(number));
    out->valid = 1;
    return 0;
}

} // namespace

extern "C" int cmn_phone_check(const char *text, cmn_phone_info_t *out)
{
    if (out == nullptr)
        return CMN_ERR_INVALID;
    std::memset(out, 0, sizeof *out);
    if (text == nullptr)
        return CMN_ERR_INVALID;
    // C callers cannot catch; an allocation failure inside the library is
    // the only exception expected, anything else is reported as invalid.
    try {
        return check(text, out);
    } catch (const std::bad_alloc &) {
        std::memset(out, 0, sizeof *out);
        return CMN_ERR_NOMEM;
    } catch (...) {
        std::memset(out, 0, sizeof *out);
        return CMN_ERR_INVALID;
    }
}

extern "C" const char *cmn_phone_type_name(cmn_phone_type_t t)
{
    switch (t) {
    case CMN_PHONE_FIXED_LINE:
        return "fixed_line";
    case CMN_PHONE_MOBILE:
        return "mobile";
    case CMN_PHONE_FIXED_LINE_OR_MOBILE:
        return "fixed_line_or_mobile";
    case CMN_PHONE_TOLL_FREE:
        return "toll_free";
    case CMN_PHONE_PREMIUM_RATE:
        return "premium_rate";
    case CMN_PHONE_SHARED_COST:
        return "shared_cost";
    case CMN_PHONE_VOIP:
        return "voip";
    case CMN_PHONE_PERSONAL_NUMBER:
        return "personal_number";
    case CMN_PHONE_PAGER:
        return "pager";
    case CMN_PHONE_UAN:
        return "uan";
    case CMN_PHONE_VOICEMAIL:
        return "voicemail";
    case CMN_PHONE_UNKNOWN:
        break;
    }
    return "unknown";
}

extern "C" int cmn_phone_is_messageable(cmn_phone_type_t t)
{
    return t == CMN_PHONE_MOBILE || t == CMN_PHONE_FIXED_LINE_OR_MOBILE;
}
