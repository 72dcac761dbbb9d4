# `cmake --install`: the programs, the example configuration, the man pages and the licence,
# in the GNUInstallDirs places (prefix /usr: /usr/sbin/jimd, /usr/bin/jim,
# /usr/share/man/man8/jimd.8, /usr/share/doc/jimd/LICENSE). The configuration goes to
# PREFIX/etc/jimd/jimd.conf; for /etc/jimd/jimd.conf configure with
# -DCMAKE_INSTALL_SYSCONFDIR=/etc (README.md, "Install as a service").
include(GNUInstallDirs)

# jimd is a system daemon started by root or the service manager, not by users: sbin, as the
# FHS and Debian policy want for daemons (sshd, redis-server's packaging, prosody use sbin too),
# with its man page in section 8.
install(TARGETS jimd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS jim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Components: the programs jimd and jim are in the default one (shared with the Debian
# package); what only a source install gets is in `source` (the package has its own
# configuration, gzipped man pages and copyright file: cmake/JimPackage.cmake). A plain
# `cmake --install` installs every component but `deb`.
if(TARGET jim-bench)
  install(TARGETS jim-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT source)
endif()

install(FILES ${PROJECT_SOURCE_DIR}/config/jimd.conf
        DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/jimd COMPONENT source)
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/jimd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8
        COMPONENT source)
install(FILES ${PROJECT_SOURCE_DIR}/docs/man/jim.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
        COMPONENT source)
# The web client (embedded in jimd) is this project's own code under the same licence.
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT source)

if(JIM_TESTS)
  # Installs this build into a temporary prefix and checks the files and the man pages.
  add_test(NAME "install: files and man pages"
           COMMAND ${PROJECT_SOURCE_DIR}/tests/install/check-install.sh ${CMAKE_BINARY_DIR}
                   $<TARGET_EXISTS:jim-bench>)
  set_tests_properties("install: files and man pages" PROPERTIES TIMEOUT 120)
endif()
