#include "http/dashboard_page.h"

#include "http/dashboard_html.h"  // generated from dashboard.html (CMakeLists.txt)

namespace fg::http {

std::string_view dashboard_page() { return kDashboardHtml; }

}  // namespace fg::http
