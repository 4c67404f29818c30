# Debian's libcaf-dev 0.17.6 ships no CMake package: this module defines CAF::core and
# CAF::io (and CAF_VERSION) from the installed headers and shared libraries.
find_path(CAF_INCLUDE_DIR NAMES caf/config.hpp)
if(CAF_INCLUDE_DIR AND EXISTS "${CAF_INCLUDE_DIR}/caf/config.hpp")
  file(STRINGS "${CAF_INCLUDE_DIR}/caf/config.hpp" _caf_ver_line
       REGEX "^#define CAF_VERSION [0-9]+")
  string(REGEX REPLACE ".* ([0-9]+)$" "\\1" _caf_v "${_caf_ver_line}")
  math(EXPR _maj "${_caf_v} / 10000")
  math(EXPR _min "(${_caf_v} / 100) % 100")
  math(EXPR _pat "${_caf_v} % 100")
  set(CAF_VERSION "${_maj}.${_min}.${_pat}")
endif()
if(NOT CAF_FIND_COMPONENTS)
  set(CAF_FIND_COMPONENTS core)
endif()
find_package(Threads REQUIRED)
set(CAF_LIBRARIES "")
foreach(_c IN LISTS CAF_FIND_COMPONENTS)
  find_library(CAF_LIBRARY_${_c} NAMES caf_${_c})
  if(CAF_LIBRARY_${_c})
    set(CAF_${_c}_FOUND TRUE)
    list(APPEND CAF_LIBRARIES ${CAF_LIBRARY_${_c}})
    if(NOT TARGET CAF::${_c})
      add_library(CAF::${_c} UNKNOWN IMPORTED)
      set_target_properties(CAF::${_c} PROPERTIES
        IMPORTED_LOCATION "${CAF_LIBRARY_${_c}}"
        INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES Threads::Threads)
      if(NOT _c STREQUAL "core")
        set_property(TARGET CAF::${_c} APPEND PROPERTY INTERFACE_LINK_LIBRARIES CAF::core)
      endif()
    endif()
  endif()
endforeach()
set(CAF_INCLUDE_DIRS "${CAF_INCLUDE_DIR}")
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CAF
  REQUIRED_VARS CAF_INCLUDE_DIR CAF_LIBRARIES
  VERSION_VAR CAF_VERSION HANDLE_COMPONENTS)
