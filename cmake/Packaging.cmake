# Installation and the Debian package (README, "Debian package"):
#   cmake --build build --target package   # or: cd build && cpack
# makes mmchat_<version>_<arch>.deb with the binaries, a systemd service running as its own
# user, /etc/mmchat/mmchat.env (kept on upgrade), mmchatctl and man pages. The package's files
# are in packaging/.
include(GNUInstallDirs)

install(TARGETS mmchat mmchat-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS packaging/mmchatctl DESTINATION ${CMAKE_INSTALL_SBINDIR})
# Debian 12 keeps units in /lib (it is merged with /usr/lib, but dpkg still owns the path).
install(FILES packaging/mmchat.service DESTINATION /lib/systemd/system)
# The unit names these paths, so they are absolute whatever the prefix.
install(FILES packaging/mmchat.env DESTINATION /etc/mmchat)
install(FILES packaging/debian/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})

# Compressed the way Debian wants them (gzip -9n: no name, no time stamp).
set(MMCHAT_GZIPPED "")
function(mmchat_gzip source output)
  add_custom_command(OUTPUT ${output}
    COMMAND gzip -9nc ${source} > ${output}
    DEPENDS ${source} VERBATIM)
  set(MMCHAT_GZIPPED ${MMCHAT_GZIPPED} ${output} PARENT_SCOPE)
endfunction()
mmchat_gzip(${PROJECT_SOURCE_DIR}/packaging/debian/changelog ${CMAKE_BINARY_DIR}/changelog.gz)
mmchat_gzip(${PROJECT_SOURCE_DIR}/packaging/mmchatctl.8 ${CMAKE_BINARY_DIR}/mmchatctl.8.gz)
install(FILES ${CMAKE_BINARY_DIR}/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_BINARY_DIR}/mmchatctl.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

# The binaries' man pages are made from their --help (one text to keep true), when help2man is
# installed (scripts/setup.sh installs it for the tests).
find_program(HELP2MAN help2man)
if(HELP2MAN)
  foreach(bin mmchat mmchat-bench)
    if(bin STREQUAL "mmchat")
      set(summary "self-hosted real-time chat server")
      set(include_arg --include=${PROJECT_SOURCE_DIR}/packaging/mmchat.h2m
        --help-option=--help-all)
    else()
      set(summary "load generator for the MmChat server")
      set(include_arg "")
    endif()
    add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/${bin}.1
      COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section=1 --name=${summary}
        --version-string=${PROJECT_VERSION} ${include_arg} --output=${CMAKE_BINARY_DIR}/${bin}.1
        $<TARGET_FILE:${bin}>
      DEPENDS ${bin} ${PROJECT_SOURCE_DIR}/packaging/mmchat.h2m VERBATIM)
    mmchat_gzip(${CMAKE_BINARY_DIR}/${bin}.1 ${CMAKE_BINARY_DIR}/${bin}.1.gz)
    install(FILES ${CMAKE_BINARY_DIR}/${bin}.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  endforeach()
endif()
add_custom_target(mmchat_package_files ALL DEPENDS ${MMCHAT_GZIPPED})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mmchat)
set(CPACK_PACKAGE_VENDOR "The MmChat authors")
set(CPACK_PACKAGE_CONTACT "MmChat maintainers <maintainers@users.noreply.b-seed-00816655.example>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "self-hosted real-time chat server")
# CPack puts the summary first and indents these lines; an empty line becomes " .".
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "MmChat serves chat apps and web pages over REST and WebSocket: accounts
verified by emailed codes, private and group conversations, messages with
replies, edits, reactions, attachments and search, receipts, typing and
presence. It embeds SQLite, so the package alone is a working server; with
PostgreSQL and Redis several servers act as one deployment.

This package holds the server, its load tool mmchat-bench, a systemd service
running as its own user, and mmchatctl for administration and backups.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The shared libraries' packages are found by dpkg-shlibdeps (Debian 12's own).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql, redis-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
  ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
  ${PROJECT_SOURCE_DIR}/packaging/debian/postrm
  ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
